"""GeneralistModel: shapes, padding invariance, incremental decoding, beams, masking, learning."""
import pytest
import torch
import torch.nn.functional as F

from ofasys_fs.contracts import AdaptorOutput
from ofasys_fs.models import generalist
from ofasys_fs.models.archs import ARCH_PRESETS
from ofasys_fs.models.generalist import Encoder, GeneralistModel, count_parameters
from ofasys_fs.models.layers import DropPath
from ofasys_fs.models.positions import relative_position_bucket
from ofasys_fs.registry import build_model

VOCAB = 300
PAD = 1
IMAGE_PATCHES = 16  # micro: 32 px images, 8 px patches


def micro_model(seed: int = 0, **overrides) -> GeneralistModel:
    torch.manual_seed(seed)
    overrides.setdefault("dropout", 0.0)
    model = GeneralistModel(arch="micro", vocab_size=VOCAB, adaptor_names={"text", None}, **overrides)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> GeneralistModel:
    model = micro_model()
    with torch.no_grad():  # non-zero relative tables, so that bias mistakes show in the outputs
        for name, parameter in model.named_parameters():
            if "relative.table" in name:
                parameter.normal_(std=0.5)
    return model


def text_piece(rows: list[list[int]], length: int = 0) -> dict:
    length = max(length, *(len(row) for row in rows))
    tokens = torch.full((len(rows), length), PAD)
    for index, row in enumerate(rows):
        tokens[index, : len(row)] = torch.tensor(row)
    return {"modality": "TEXT", "adaptor": "text", "tokens": tokens, "padding_mask": tokens.eq(PAD)}


def image_piece(images: torch.Tensor) -> dict:
    return {"modality": "IMAGE", "adaptor": None, "image": images}


def random_rows(generator: torch.Generator, lengths: list[int]) -> list[list[int]]:
    return [torch.randint(4, VOCAB, (n,), generator=generator).tolist() for n in lengths]


def sample_of(pieces: list[dict], prev: torch.Tensor) -> dict:
    return {"net_input": {"encoder": pieces, "prev_output_tokens": prev}}


def test_shapes_text_only(model):
    g = torch.Generator().manual_seed(1)
    pieces = [text_piece(random_rows(g, [5, 8]))]
    prev = torch.randint(4, VOCAB, (2, 6), generator=g)
    logits, extra = model(sample_of(pieces, prev))
    assert logits.shape == (2, 6, VOCAB)
    encoder_out = extra["encoder_out"]
    assert encoder_out.x.shape == (2, 8, 64)
    assert encoder_out.padding_mask.tolist() == pieces[0]["padding_mask"].tolist()
    assert extra["hidden"].shape == (2, 6, 64)


def test_shapes_text_and_image_with_padding(model):
    g = torch.Generator().manual_seed(2)
    pieces = [text_piece(random_rows(g, [3, 7])), image_piece(torch.randn(2, 3, 32, 32, generator=g)),
              text_piece(random_rows(g, [4, 2]))]
    logits, extra = model(sample_of(pieces, torch.randint(4, VOCAB, (2, 5), generator=g)))
    assert logits.shape == (2, 5, VOCAB)
    mask = extra["encoder_out"].padding_mask
    assert mask.shape == (2, 7 + IMAGE_PATCHES + 4)
    assert mask[0].tolist() == [False] * 3 + [True] * 4 + [False] * IMAGE_PATCHES + [False] * 4
    assert mask[1].tolist() == [False] * 7 + [False] * IMAGE_PATCHES + [False] * 2 + [True] * 2
    assert torch.isfinite(logits).all()


def test_padding_invariance(model):
    """A row's outputs do not change when another row of the batch is longer (encoder and decoder)."""
    g = torch.Generator().manual_seed(3)
    short, long = random_rows(g, [4, 9])
    image = torch.randn(2, 3, 32, 32, generator=g)
    prev_short = torch.randint(4, VOCAB, (1, 3), generator=g)
    alone_logits, alone = model(sample_of([text_piece([short]), image_piece(image[:1])], prev_short))
    prev_batch = torch.full((2, 7), PAD)
    prev_batch[0, :3] = prev_short[0]
    prev_batch[1] = torch.randint(4, VOCAB, (7,), generator=g)
    batch_logits, batch = model(sample_of([text_piece([short, long]), image_piece(image)], prev_batch))
    alone_x, batch_x = alone["encoder_out"].x[0], batch["encoder_out"].x[0]
    torch.testing.assert_close(batch_x[:4], alone_x[:4], atol=1e-5, rtol=0)
    torch.testing.assert_close(batch_x[9:], alone_x[4:], atol=1e-5, rtol=0)  # the image after the text
    torch.testing.assert_close(batch_logits[0, :3], alone_logits[0], atol=1e-5, rtol=0)


def decode_step_by_step(model, prev, encoder_out, state, start=1):
    return torch.cat([model.decoder(prev[:, :t], encoder_out, state)[0] for t in range(start, prev.size(1) + 1)], 1)


def test_incremental_decoding_equals_teacher_forcing(model):
    g = torch.Generator().manual_seed(4)
    pieces = [text_piece(random_rows(g, [6, 3])), image_piece(torch.randn(2, 3, 32, 32, generator=g))]
    prev = torch.randint(4, VOCAB, (2, 8), generator=g)
    with torch.no_grad():
        full, extra = model(sample_of(pieces, prev))
        encoder_out = extra["encoder_out"]
        stepped = decode_step_by_step(model, prev, encoder_out, {})
        state = {}
        prefix_logits, _ = model.decoder(prev[:, :3], encoder_out, state)  # a forced prefix in one call
        rest = decode_step_by_step(model, prev, encoder_out, state, start=4)
    assert stepped.shape == full.shape
    assert (stepped - full).abs().max() < 1e-5
    assert prefix_logits.shape == (2, 1, VOCAB)
    assert (prefix_logits[:, 0] - full[:, 2]).abs().max() < 1e-5
    assert (rest - full[:, 3:]).abs().max() < 1e-5
    with pytest.raises(ValueError, match="already holds 8 positions"):
        model.decoder(prev, encoder_out, state)


def first_layer_inputs(model: GeneralistModel, sample: dict) -> dict:
    """What the first encoder and decoder layers receive (forward pre-hooks)."""
    seen = {}

    def keep(name: str):
        def hook(_, args) -> None:
            seen[name] = args[0]
        return hook

    hooks = [part.layers[0].register_forward_pre_hook(keep(name))
             for name, part in (("encoder", model.encoder), ("decoder", model.decoder))]
    with torch.no_grad():
        model(sample)
    for hook in hooks:
        hook.remove()
    return seen


def test_entangled_positions_are_added_to_the_embeddings_and_decode_incrementally():
    uniform = sample_of([image_piece(torch.ones(1, 3, 32, 32))], torch.full((1, 4), 7))
    # the linear patchify maps equal patches to equal vectors (the conv stem's zero padding sees the border)
    plain = micro_model(patch_stem="linear")
    entangled = micro_model(entangle_position_embedding=True, patch_stem="linear")
    seen = first_layer_inputs(plain, uniform)
    assert (seen["encoder"] - seen["encoder"][:, :1]).abs().max() == 0  # same patch, same vector: position-blind
    assert (seen["decoder"] - seen["decoder"][:, :1]).abs().max() == 0
    seen = first_layer_inputs(entangled, uniform)
    assert (seen["encoder"] - seen["encoder"][:, :1]).abs().amax(dim=-1)[0, 1:].min() > 1e-3  # every patch differs
    assert (seen["decoder"] - seen["decoder"][:, :1]).abs().amax(dim=-1)[0, 1:].min() > 1e-3
    g = torch.Generator().manual_seed(5)
    pieces = [text_piece(random_rows(g, [6, 3])), image_piece(torch.randn(2, 3, 32, 32, generator=g))]
    prev = torch.randint(4, VOCAB, (2, 8), generator=g)
    with torch.no_grad():
        full, extra = entangled(sample_of(pieces, prev))
        stepped = decode_step_by_step(entangled, prev, extra["encoder_out"], {})
    assert (stepped - full).abs().max() < 1e-5


def test_reorder_for_beams_and_finished_rows(model):
    """Expand rows into beams, reorder beams, then drop a finished row; every remaining beam still
    matches teacher forcing on its own prefix."""
    g = torch.Generator().manual_seed(5)
    encoder_out = model.encoder([text_piece(random_rows(g, [5, 2]))])
    beam = 3
    prev = torch.randint(4, VOCAB, (2 * beam, 6), generator=g)
    with torch.no_grad():
        expanded = model.reorder_encoder_out(encoder_out, torch.arange(2).repeat_interleave(beam))
        state = {}
        decode_step_by_step(model, prev[:, :3], expanded, state)
        beam_order = torch.tensor([2, 2, 0, 4, 3, 3])
        model.reorder_incremental_state(state, beam_order)
        expanded = model.reorder_encoder_out(expanded, beam_order)
        prev = torch.cat([prev[beam_order, :3], prev[:, 3:]], dim=1)
        decode_step_by_step(model, prev[:, :4], expanded, state, start=4)
        survivors = torch.tensor([3, 4, 5])  # row 0 finished and leaves the batch
        model.reorder_incremental_state(state, survivors)
        expanded = model.reorder_encoder_out(expanded, survivors)
        prev = prev[survivors]
        stepped = decode_step_by_step(model, prev, expanded, state, start=5)
        full, _ = model.decoder(prev, model.reorder_encoder_out(encoder_out, torch.tensor([1, 1, 1])))
    assert stepped.shape == (3, 2, VOCAB)
    assert (stepped - full[:, 4:]).abs().max() < 1e-5


def test_position_bias_blocks_of_incremental_decoding(model, monkeypatch):
    """Incremental decoding computes the decoder's position biases for blocks of positions at once: crossing
    block boundaries (also with a prefix fed in one call, and at the last position) matches teacher forcing."""
    monkeypatch.setattr(generalist, "POSITION_BLOCK", 3)
    g = torch.Generator().manual_seed(8)
    encoder_out = model.encoder([text_piece(random_rows(g, [5, 3]))])
    prev = torch.randint(4, VOCAB, (2, 9), generator=g)
    with torch.no_grad():
        full, _ = model.decoder(prev, encoder_out)
        state = {}
        model.decoder(prev[:, :2], encoder_out, state)
        stepped = decode_step_by_step(model, prev, encoder_out, state, start=3)
    torch.testing.assert_close(stepped, full[:, 2:], atol=1e-5, rtol=0)
    short = micro_model(max_target_positions=4)
    with torch.no_grad():
        encoder_out = short.encoder([text_piece(random_rows(g, [5, 3]))])
        full, _ = short.decoder(prev[:, :4], encoder_out)
        torch.testing.assert_close(decode_step_by_step(short, prev[:, :4], encoder_out, {}), full, atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="exceeds its 4 positions"):
            decode_step_by_step(short, prev[:, :5], encoder_out, {})


def test_teacher_forcing_projects_the_shared_encoder_positions_once(model):
    """The cross-attention position keys of position vectors every row shares are projected for one row, not per
    row, with the logits of the per-row projection (the encoder output reordered to materialised rows)."""
    g = torch.Generator().manual_seed(9)
    encoder_out = model.encoder([text_piece(random_rows(g, [5, 2, 4]))])
    prev = torch.randint(4, VOCAB, (3, 6), generator=g)
    rows = []
    handle = model.decoder.cross_pos_k.register_forward_hook(lambda _, inputs, __: rows.append(inputs[0].size(0)))
    try:
        with torch.no_grad():
            shared, _ = model.decoder(prev, encoder_out)
            per_row, _ = model.decoder(prev, model.reorder_encoder_out(encoder_out, torch.arange(3)))
    finally:
        handle.remove()
    assert rows == [1, 3]
    torch.testing.assert_close(shared, per_row, atol=1e-5, rtol=0)


def test_one_hypothesis_per_row_widens_to_beams_that_share_their_source_rows(model):
    """Beam search's first step runs one hypothesis per source row; widening that state to k per row keeps one
    per-source cache row per source and decodes as a state that had k rows per source from the start."""
    g = torch.Generator().manual_seed(8)
    encoder_out = model.encoder([text_piece(random_rows(g, [5, 2, 4]))])
    beam = 3
    first = torch.randint(4, VOCAB, (3, 1), generator=g)
    prev = torch.cat([first.repeat_interleave(beam, 0), torch.randint(4, VOCAB, (3 * beam, 2), generator=g)], 1)
    with torch.no_grad():
        narrow, wide = {}, {}
        decode_step_by_step(model, first, encoder_out, narrow)
        model.reorder_incremental_state(narrow, torch.arange(3).repeat_interleave(beam))
        assert narrow["source"]["layers.0.cross_attn"]["k"].size(0) == 3
        assert narrow["layers.0.self_attn"]["k"].size(0) == 3 * beam
        decode_step_by_step(model, prev[:, :1], encoder_out, wide)
        torch.testing.assert_close(decode_step_by_step(model, prev, encoder_out, narrow, start=2),
                                   decode_step_by_step(model, prev, encoder_out, wide, start=2), atol=1e-5, rtol=0)


def test_beams_share_their_source_rows(model):
    """An encoder output of R rows serves R x k hypotheses (k consecutive per row): the same logits as an
    encoder output expanded to one row per hypothesis, teacher-forced and step by step, through beam
    reorders within rows (the per-source caches stay shared), a row leaving, and a reorder across rows."""
    g = torch.Generator().manual_seed(7)
    encoder_out = model.encoder([text_piece(random_rows(g, [5, 2, 4]))])
    beam = 2
    prev = torch.randint(4, VOCAB, (3 * beam, 7), generator=g)
    with torch.no_grad():
        expand = torch.arange(3).repeat_interleave(beam)
        full, _ = model.decoder(prev, model.reorder_encoder_out(encoder_out, expand))
        shared_full, _ = model.decoder(prev, encoder_out)
        torch.testing.assert_close(shared_full, full, atol=1e-5, rtol=0)
        state = {}
        stepped = decode_step_by_step(model, prev[:, :3], encoder_out, state)
        torch.testing.assert_close(stepped, full[:, :3], atol=1e-5, rtol=0)
        assert state["source"]["layers.0.cross_attn"]["k"].size(0) == 3  # one cache row per source row
        within_rows = torch.tensor([1, 1, 2, 3, 5, 4])
        model.reorder_incremental_state(state, within_rows)
        assert state["source"]["layers.0.cross_attn"]["k"].size(0) == 3
        prev = torch.cat([prev[within_rows, :3], prev[:, 3:]], dim=1)
        expected, _ = model.decoder(prev, model.reorder_encoder_out(encoder_out, expand))
        torch.testing.assert_close(decode_step_by_step(model, prev[:, :4], encoder_out, state, start=4),
                                   expected[:, 3:4], atol=1e-5, rtol=0)
        rows_left = torch.tensor([4, 5, 0, 1])  # row 1 leaves, rows 2 and 0 swap places
        model.reorder_incremental_state(state, rows_left)
        encoder_out = model.reorder_encoder_out(encoder_out, torch.tensor([2, 0]))
        assert state["source"]["layers.0.cross_attn"]["k"].size(0) == 2
        prev = prev[rows_left]
        expected, _ = model.decoder(prev, model.reorder_encoder_out(encoder_out, torch.tensor([0, 0, 1, 1])))
        torch.testing.assert_close(decode_step_by_step(model, prev[:, :5], encoder_out, state, start=5),
                                   expected[:, 4:5], atol=1e-5, rtol=0)
        across_rows = torch.tensor([0, 2, 1, 3])  # groups mix sources: one cache row per hypothesis from now on
        model.reorder_incremental_state(state, across_rows)
        assert state["source"]["layers.0.cross_attn"]["k"].size(0) == 4
        prev = prev[across_rows]
        per_hypothesis = model.reorder_encoder_out(encoder_out, torch.tensor([0, 1, 0, 1]))
        expected, _ = model.decoder(prev, per_hypothesis)
        torch.testing.assert_close(decode_step_by_step(model, prev, per_hypothesis, state, start=6),
                                   expected[:, 5:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="cannot share the keys of 3 rows"):
        model.decoder(prev[:4], model.encoder([text_piece(random_rows(g, [5, 2, 4]))]))


def test_causal_masking(model):
    g = torch.Generator().manual_seed(6)
    encoder_out = model.encoder([text_piece(random_rows(g, [5]))])
    prev = torch.randint(4, VOCAB, (1, 8), generator=g)
    changed = prev.clone()
    changed[0, 4] = (prev[0, 4] + 1) % VOCAB
    with torch.no_grad():
        before, _ = model.decoder(prev, encoder_out)
        after, _ = model.decoder(changed, encoder_out)
    assert torch.equal(before[0, :4], after[0, :4])
    assert (before[0, 4:] - after[0, 4:]).abs().max() > 1e-3


def test_relative_bias_only_within_a_piece():
    """Each piece's relative bias lands on its own diagonal block; cross-piece pairs keep the base bias."""
    base = torch.zeros(1, 2, 5, 5)
    text = AdaptorOutput(torch.zeros(1, 2, 8), torch.zeros(1, 2, dtype=torch.bool),
                         rel_bias=torch.full((3, 1, 2, 2, 2), 1.0) * torch.arange(3.0)[:, None, None, None, None])
    image = AdaptorOutput(torch.zeros(1, 3, 8), torch.zeros(1, 3, dtype=torch.bool), rel_bias=torch.full((1, 2, 3, 3), 5.0))
    bias = Encoder.layer_bias(base, [text, image], layer=2)
    assert (bias[..., :2, :2] == 2.0).all() and (bias[..., 2:, 2:] == 5.0).all()
    assert (bias[..., :2, 2:] == 0).all() and (bias[..., 2:, :2] == 0).all()
    assert (base == 0).all()  # the shared base is not modified in place


def test_relative_position_bucket():
    distances = torch.arange(-300, 301)
    buckets = relative_position_bucket(distances, num_buckets=32, max_distance=128)
    assert buckets.min() >= 0 and buckets.max() < 32
    near = buckets[(distances.abs() < 8)]
    assert len(set(near.tolist())) == 15  # one bucket per small distance, both signs
    assert not set(buckets[distances < 0].tolist()) & set(buckets[distances > 0].tolist())
    assert buckets[distances == 200].item() == buckets[distances == 128].item()  # clipped beyond max_distance


def test_count_parameters_table():
    built = micro_model()
    assert count_parameters("micro", vocab_size=VOCAB, adaptor_names={"text", None}) == sum(
        p.numel() for p in built.parameters()
    )
    assert count_parameters("micro", vocab_size=VOCAB + 1) - count_parameters("micro", vocab_size=VOCAB) == 64
    counts = [count_parameters(arch, vocab_size=VOCAB) for arch in ARCH_PRESETS]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


def test_micro_model_overfits_one_batch():
    model = micro_model(seed=7).train()
    g = torch.Generator().manual_seed(7)
    pieces = [text_piece(random_rows(g, [6, 4, 5, 6])), image_piece(torch.randn(4, 3, 32, 32, generator=g))]
    target = torch.randint(4, VOCAB, (4, 7), generator=g)
    prev = torch.cat([torch.zeros(4, 1, dtype=torch.long), target[:, :-1]], dim=1)
    sample = sample_of(pieces, prev)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        logits, _ = model(sample)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses[::10]


def test_checkpoint_activations_gives_identical_gradients():
    g = torch.Generator().manual_seed(8)
    pieces = [text_piece(random_rows(g, [5, 3])), image_piece(torch.randn(2, 3, 32, 32, generator=g))]
    sample = sample_of(pieces, torch.randint(4, VOCAB, (2, 4), generator=g))
    gradients = []
    for checkpointing in (False, True):
        model = micro_model(seed=8, checkpoint_activations=checkpointing).train()
        model(sample)[0].pow(2).mean().backward()
        gradients.append({name: p.grad for name, p in model.named_parameters()})
    assert gradients[0].keys() == gradients[1].keys()
    for name, grad in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], grad, atol=1e-7, rtol=0, msg=name)


def test_bf16_autocast_forward_and_backward(model):
    g = torch.Generator().manual_seed(9)
    pieces = [text_piece(random_rows(g, [5, 3])), image_piece(torch.randn(2, 3, 32, 32, generator=g))]
    trainable = micro_model(seed=9).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = trainable(sample_of(pieces, torch.randint(4, VOCAB, (2, 4), generator=g)))
    logits.float().mean().backward()
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
    assert trainable.embed_tokens.weight.grad is not None


def test_default_model_is_an_unbuilt_tiny_holder():
    model = GeneralistModel()
    assert model.cfg.arch == "tiny" and model.cfg.embed_dim == 256 and model.cfg.image_adaptor == "image_patch"
    assert not model.is_built and list(model.parameters()) == []
    with pytest.raises(RuntimeError, match=r"model\.build\(vocab, adaptor_names\)"):
        model({"net_input": {}})
    with pytest.raises(AttributeError, match="no weights yet"):
        model.encoder
    model.build(VOCAB, ["text"])
    assert model.is_built and model.adaptor_names == ("text",)
    with pytest.raises(RuntimeError, match="already built"):
        model.build(VOCAB)


def test_config_resolution_and_registry():
    assert GeneralistModel(arch="base").cfg.image_size == 480
    assert GeneralistModel(arch="tiny", image_adaptor="image_resnet").cfg.image_size == 480
    assert GeneralistModel(arch="micro", embed_dim=32).cfg.embed_dim == 32
    built = build_model({"name": "generalist", "arch": "micro"}, VOCAB, {"text"})
    assert isinstance(built, GeneralistModel) and built.cfg == GeneralistModel(arch="micro").cfg
    with pytest.raises(TypeError, match='no option "embed_dimm". Did you mean "embed_dim"'):
        GeneralistModel(embed_dimm=8)
    with pytest.raises(ValueError, match='unknown architecture "mikro". Did you mean "micro"'):
        GeneralistModel(arch="mikro")
    with pytest.raises(ValueError, match="embed_dim=66 must be divisible by attention_heads=4"):
        GeneralistModel(arch="tiny", embed_dim=66)


def test_clear_errors_on_bad_pieces(model):
    text_only = GeneralistModel(arch="micro", vocab_size=VOCAB, adaptor_names=["text"])
    with pytest.raises(KeyError, match=r'piece 1 \(IMAGE\) needs adaptor "image_patch".*built: text'):
        text_only.encoder([text_piece([[5, 6]]), image_piece(torch.randn(1, 3, 32, 32))])
    with pytest.raises(ValueError, match="expected sides that are multiples of patch_size=8"):
        model.encoder([image_piece(torch.randn(1, 3, 30, 30))])
    with pytest.raises(ValueError, match="exceeds its 1024 positions"):
        model.encoder([text_piece([[5] * 1025])])
    with pytest.raises(KeyError, match='no "tokens"'):
        model.encoder([{"modality": "TEXT", "adaptor": "text"}])


def test_drop_path_drops_whole_samples():
    drop = DropPath(0.5).train()
    torch.manual_seed(0)
    out = drop(torch.ones(64, 3, 4))
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()
    assert torch.equal(drop.eval()(torch.ones(4, 3)), torch.ones(4, 3))
