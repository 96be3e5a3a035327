"""Attention with separate additive biases (models/layers.py) against a straightforward reference: the function
itself (values and gradients, both of its paths, grouped rows), and the whole model in training, evaluation and
incremental decoding with the reference patched in."""
import pytest
import torch

from ofasys_fs.models import layers
from ofasys_fs.models.generalist import GeneralistModel

VOCAB, PAD, HEADS = 300, 1, 4
MIN = torch.finfo(torch.float32).min


def reference_attention(q, k, v, biases, dropout, scale=None):
    """softmax(q k^T * scale + the biases summed) v, written out (no dropout: the tests run without it)."""
    assert dropout == 0.0
    scale = q.size(-1) ** -0.5 if scale is None else scale
    scores = q @ k.transpose(-1, -2) * scale + sum(biases)
    return torch.softmax(scores, dim=-1) @ v


def random_inputs(seed: int, rows: int = 3, queries: int = 5, keys: int = 7, dim: int = 8) -> tuple:
    """q/k/v [rows, H, ., dim] and three biases needing a gradient: [1, H, Tq, Tk], [rows, H, Tq, Tk] and a
    padding bias [rows, 1, 1, Tk] (the last two keys of row 0 hidden) that needs none."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(rows, HEADS, queries, dim, generator=g)
    k, v = (torch.randn(rows, HEADS, keys, dim, generator=g) for _ in range(2))
    shared = torch.randn(1, HEADS, queries, keys, generator=g)
    per_row = torch.randn(rows, HEADS, queries, keys, generator=g)
    padding = torch.zeros(rows, 1, 1, keys)
    padding[0, ..., -2:] = MIN
    return q, k, v, shared, per_row, padding


def values_and_gradients(function, tensors: list, grad_of: list, *args) -> list:
    """function's output and the gradients of a fixed projection of it w.r.t. `grad_of` (indices into tensors)."""
    tensors = [t.clone().requires_grad_(i in grad_of) for i, t in enumerate(tensors)]
    out = function(*tensors[:3], tuple(tensors[3:]), *args)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)
    grads = torch.autograd.grad((out * weights).sum(), [tensors[i] for i in grad_of])
    return [out, *grads]


@pytest.mark.parametrize("scale", [None, 0.25])
def test_attention_equals_the_reference_with_and_without_bias_gradients(scale):
    q, k, v, shared, per_row, padding = random_inputs(0)
    inputs = [q, k, v, shared, per_row, padding]
    for grad_of in ([0, 1, 2, 3, 4], [0, 1, 2]):  # the in-place path (biases need a gradient), then SDPA's
        got = values_and_gradients(layers.attention, inputs, grad_of, 0.0, scale)
        want = values_and_gradients(reference_attention, inputs, grad_of, 0.0, scale)
        for name, a, b in zip(["out"] + [f"grad {i}" for i in grad_of], got, want):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(layers.attention(q, k, v, (shared, per_row, padding), 0.0, scale),
                                   reference_attention(q, k, v, (shared, per_row, padding), 0.0, scale),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bias_rows", [1, 2, 6])
def test_grouped_attention_equals_the_reference_over_expanded_rows(bias_rows):
    """k/v of R=2 rows serving N=6 query rows (3 consecutive per row), biases of 1, R or N rows."""
    g = torch.Generator().manual_seed(bias_rows)
    q = torch.randn(6, HEADS, 1, 8, generator=g)
    k, v = (torch.randn(2, HEADS, 7, 8, generator=g) for _ in range(2))
    position = torch.randn(1, HEADS, 1, 7, generator=g)
    padding = torch.zeros(bias_rows, 1, 1, 7)
    padding[-1, ..., :3] = MIN
    expand = torch.arange(2).repeat_interleave(3)
    expanded_padding = padding if bias_rows != 2 else padding[expand]
    with torch.no_grad():
        got = layers.grouped_attention(q, k, v, (position, padding), 0.0)
    torch.testing.assert_close(got, reference_attention(q, k[expand], v[expand], (position, expanded_padding), 0.0),
                               atol=1e-5, rtol=1e-5)


def micro_model(seed: int, **overrides) -> GeneralistModel:
    torch.manual_seed(seed)
    # the linear patchify: without the conv stem's BatchNorm a training forward equals an evaluation one
    model = GeneralistModel(arch="micro", vocab_size=VOCAB, adaptor_names={"text", None}, dropout=0.0,
                            **{"patch_stem": "linear", **overrides})
    with torch.no_grad():  # non-zero relative tables, so that bias mistakes show in the outputs
        for name, parameter in model.named_parameters():
            if "relative.table" in name:
                parameter.normal_(std=0.5, generator=torch.Generator().manual_seed(seed))
    return model


def sample(seed: int) -> dict:
    """Two rows: text (one row padded), an image, text again; 6 target tokens."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, VOCAB, (2, 6), generator=g)
    tokens[1, 4:] = PAD
    more = torch.randint(4, VOCAB, (2, 3), generator=g)
    pieces = [{"modality": "TEXT", "adaptor": "text", "tokens": tokens, "padding_mask": tokens.eq(PAD)},
              {"modality": "IMAGE", "adaptor": None, "image": torch.randn(2, 3, 32, 32, generator=g)},
              {"modality": "TEXT", "adaptor": "text", "tokens": more, "padding_mask": more.eq(PAD)}]
    return {"net_input": {"encoder": pieces, "prev_output_tokens": torch.randint(4, VOCAB, (2, 6), generator=g)}}


def train_step(model: GeneralistModel, batch: dict) -> tuple[torch.Tensor, dict]:
    """Logits of a training forward and every parameter's gradient of a fixed function of them."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # the same drop-path draws in both runs
    logits = model.train()(batch)[0]
    logits.pow(2).mean().backward()
    return logits.detach(), {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch_overrides", [{}, {"attn_scale_factor": 2.0, "scale_heads": True}])
def test_model_equals_the_reference_attention_in_training_evaluation_and_decoding(monkeypatch, arch_overrides):
    model, batch = micro_model(3, **arch_overrides), sample(4)
    logits, grads = train_step(model, batch)
    model.eval()
    with torch.no_grad():
        eval_logits, extra = model(batch)
        encoder_out, prev = extra["encoder_out"], batch["net_input"]["prev_output_tokens"]
        state, beams = {}, torch.arange(2).repeat_interleave(2)  # 2 beams per row share their source row
        stepped = torch.cat([model.decoder(prev[beams, :t], encoder_out, state)[0] for t in range(1, 7)], 1)
    monkeypatch.setattr(layers, "attention", reference_attention)
    want_logits, want_grads = train_step(model, batch)
    torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=1e-5)
    assert grads.keys() == want_grads.keys()
    scale = max(grad.abs().max() for grad in want_grads.values())
    for name, grad in want_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-5 * scale, rtol=1e-4, msg=name)
    model.eval()
    with torch.no_grad():
        want_eval = model(batch)[0]
    torch.testing.assert_close(eval_logits, want_eval, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stepped, want_eval[beams], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(want_logits, want_eval, atol=1e-5, rtol=1e-5)  # dropout 0: train == eval


def test_per_row_position_vectors_equal_shared_ones(monkeypatch):
    """An adaptor's position vectors given per row ([B, S, D], a batch-expanded encoder position bias) or once
    ([1, S, D], one row apart from the padding) give the same logits and gradients."""
    model, batch = micro_model(5), sample(6)
    shared_logits, shared_grads = train_step(model, batch)
    text = model.encoder.adaptors["text"]
    forward = type(text).forward

    def per_row(self, piece):
        out = forward(self, piece)
        rows = out.embeddings.size(0)
        out.position_embeddings = out.position_embeddings.expand(rows, -1, -1).contiguous()
        return out

    monkeypatch.setattr(type(text), "forward", per_row)
    logits, grads = train_step(model, batch)
    torch.testing.assert_close(logits, shared_logits, atol=1e-5, rtol=1e-5)
    for name, grad in shared_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-7, rtol=1e-4, msg=name)
