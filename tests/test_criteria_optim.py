"""Label-smoothed CE against hand computations, AdamW param groups, lr schedules, EMA math."""
import io
import math

import pytest
import torch
from torch import nn

from ofasys_fs import contracts
from ofasys_fs.criteria.label_smoothed_ce import LabelSmoothedCE, LabelSmoothedCEConfig
from ofasys_fs.engine.ema import EMA
from ofasys_fs.errors import CheckpointError
from ofasys_fs.optim.adamw import AdamW, AdamWConfig
from ofasys_fs.registry import build_criterion, build_lr_scheduler, build_optimizer

PAD = 1
# Two rows, three target positions, vocabulary of 5. Row 1 has a one-token forced prefix.
LOGITS = [
    [[0.1, 0.2, -0.3, 0.5, 1.0], [0.3, -1.0, 0.7, 0.0, 0.2], [0.0, 0.0, 0.0, 0.0, 0.0]],
    [[1.0, 0.0, 0.5, 0.2, -0.5], [2.0, 0.1, -0.2, 0.3, 0.4], [0.9, -0.4, 0.1, 1.5, 0.6]],
]
TARGET = [[4, 2, PAD], [3, 4, 2]]
LOSS_POSITIONS = [(0, 0), (0, 1), (1, 1), (1, 2)]  # not pad, not the prefix of row 1


class FixedLogits(contracts.Model):
    """Returns the same learnable logits for any sample."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, sample):
        return self.logits, {}


def make_sample(**extra):
    sample = {
        "task": "toy",
        "id": torch.tensor([10, 11]),
        "nsentences": 2,
        "target": torch.tensor(TARGET),
        "prefix_lengths": torch.tensor([0, 1]),
        "ntokens": len(LOSS_POSITIONS),
    }
    sample.update(extra)
    return sample


def hand_loss(epsilon, allowed=lambda b, t: range(5), positions=LOSS_POSITIONS):
    """-sum_k q_k log p_k with p renormalised over the allowed tokens, q = 1-eps on the target,
    eps/(K-1) on every other allowed token."""
    total = nll_total = 0.0
    for b, t in positions:
        tokens = list(allowed(b, t))
        norm = math.log(sum(math.exp(LOGITS[b][t][k]) for k in tokens))
        logp = {k: LOGITS[b][t][k] - norm for k in tokens}
        gold = TARGET[b][t]
        others = [k for k in tokens if k != gold]
        total -= (1 - epsilon) * logp[gold] + sum(epsilon / len(others) * logp[k] for k in others)
        nll_total -= logp[gold]
    return total, nll_total


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_loss_matches_hand_computation_ignoring_pad_and_prefix(epsilon):
    criterion = LabelSmoothedCE(LabelSmoothedCEConfig(label_smoothing=epsilon))
    loss, sample_size, log = criterion(FixedLogits(LOGITS), make_sample())
    expected, expected_nll = hand_loss(epsilon)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert log["loss"] == pytest.approx(expected, rel=1e-5)
    assert log["nll_loss"] == pytest.approx(expected_nll, rel=1e-5)
    assert sample_size == log["sample_size"] == log["ntokens"] == 4
    assert log["nsentences"] == 2
    # argmax: (0,0)->4 right, (0,1)->2 right, (1,1)->0 wrong, (1,2)->3 wrong
    assert (log["n_correct"], log["total"]) == (2, 4)


def test_gradient_reaches_loss_positions_only():
    model = FixedLogits(LOGITS)
    loss, _, _ = LabelSmoothedCE()(model, make_sample())
    loss.backward()
    grad_norm_per_position = model.logits.grad.abs().sum(-1)
    for b in range(2):
        for t in range(3):
            assert (grad_norm_per_position[b, t] > 0) == ((b, t) in LOSS_POSITIONS)


def test_ignore_prefix_size_and_sentence_avg():
    cfg = LabelSmoothedCEConfig(label_smoothing=0.0, ignore_prefix_size=1, sentence_avg=True)
    loss, sample_size, log = LabelSmoothedCE(cfg)(FixedLogits(LOGITS), make_sample())
    expected, _ = hand_loss(0.0, positions=LOSS_POSITIONS[1:])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert log["ntokens"] == 3 and sample_size == 2


def test_task_weight_scales_the_optimised_loss_not_the_log():
    criterion = LabelSmoothedCE()
    plain, _, plain_log = criterion(FixedLogits(LOGITS), make_sample())
    weighted, _, weighted_log = criterion(FixedLogits(LOGITS), make_sample(task_weight=2.5))
    assert weighted.item() == pytest.approx(2.5 * plain.item(), rel=1e-6)
    assert weighted_log["loss"] == pytest.approx(plain_log["loss"])


def test_vocabulary_range_mask_renormalises_and_smooths_over_allowed_tokens_only():
    allowed_row1 = [2, 3, 4]  # e.g. <bin> ids plus </s>
    masks = torch.ones(2, 1, 5, dtype=torch.bool)
    masks[1, 0] = False
    masks[1, 0, allowed_row1] = True
    model = FixedLogits(LOGITS)
    loss, _, log = LabelSmoothedCE()(model, make_sample(constraint_masks=masks))
    expected, expected_nll = hand_loss(0.1, allowed=lambda b, t: allowed_row1 if b == 1 else range(5))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert log["nll_loss"] == pytest.approx(expected_nll, rel=1e-5)
    # (1,1): argmax over all is token 0, over the allowed set it is 4 = target
    assert log["n_correct"] == 3
    loss.backward()
    assert torch.all(model.logits.grad[1, 1:, [0, 1]] == 0)  # disallowed tokens have zero probability


def test_per_position_closed_set_masks():
    allowed = {(0, 0): [0, 4], (0, 1): [2, 3], (1, 1): [1, 4], (1, 2): [0, 2, 3]}
    masks = torch.zeros(2, 3, 5, dtype=torch.bool)
    masks[0, 2] = True  # pad position: anything, never used
    masks[1, 0] = True  # prefix position
    for (b, t), tokens in allowed.items():
        masks[b, t, tokens] = True
    loss, _, _ = LabelSmoothedCE()(FixedLogits(LOGITS), make_sample(constraint_masks=masks))
    expected, _ = hand_loss(0.1, allowed=lambda b, t: allowed[(b, t)])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_bad_samples_get_clear_errors():
    criterion, model = LabelSmoothedCE(), FixedLogits(LOGITS)
    masks = torch.ones(2, 3, 5, dtype=torch.bool)
    masks[1, 2, 2] = False
    with pytest.raises(ValueError, match=r"row 11: target token id 2 at target position 2 is not allowed"):
        criterion(model, make_sample(constraint_masks=masks))
    with pytest.raises(ValueError, match=r"constraint_masks must be a BoolTensor"):
        criterion(model, make_sample(constraint_masks=torch.ones(2, 2, 5, dtype=torch.bool)))
    with pytest.raises(ValueError, match=r"sample\['ntokens'\]=5 but the target has 4"):
        criterion(model, make_sample(ntokens=5))
    with pytest.raises(ValueError, match="label_smoothing"):
        LabelSmoothedCEConfig(label_smoothing=1.0)


def test_registered_criterion_and_reduced_metrics():
    criterion = build_criterion({"name": "label_smoothed_ce", "label_smoothing": 0.0})
    assert isinstance(criterion, LabelSmoothedCE) and criterion.cfg.label_smoothing == 0.0
    logs = [
        {"loss": 4.0, "nll_loss": 3.0, "ntokens": 2, "sample_size": 2, "n_correct": 1, "total": 2},
        {"loss": 2.0, "nll_loss": 1.0, "ntokens": 2, "sample_size": 2, "n_correct": 2, "total": 2},
    ]
    metrics = LabelSmoothedCE.reduce_metrics(logs)
    assert metrics["loss"] == pytest.approx(1.5 / math.log(2))
    assert metrics["nll_loss"] == pytest.approx(1.0 / math.log(2))
    assert metrics["ppl"] == pytest.approx(math.e)
    assert metrics["token_accuracy"] == pytest.approx(0.75)  # one scale for accuracies: [0, 1]


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(4, 3)
        self.proj = nn.Linear(3, 3)
        self.norm = nn.LayerNorm(3)
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)


def test_adamw_decays_only_multi_dimensional_trainable_parameters():
    model = Tiny()
    optimizer = build_optimizer({"name": "adamw", "lr": 0.1, "weight_decay": 0.5, "betas": "(0.9, 0.98)"})
    optimizer = optimizer.build(model)
    decayed, undecayed = optimizer.param_groups
    assert {id(p) for p in decayed["params"]} == {id(model.embed.weight), id(model.proj.weight)}
    assert decayed["weight_decay"] == 0.5 and undecayed["weight_decay"] == 0.0
    no_decay = {id(model.proj.bias), id(model.norm.weight), id(model.norm.bias)}
    assert {id(p) for p in undecayed["params"]} == no_decay
    assert decayed["betas"] == (0.9, 0.98)
    # With zero gradients AdamW's only effect is decoupled decay: p *= 1 - lr * wd.
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert torch.allclose(model.proj.weight, before["proj.weight"] * 0.95)
    assert torch.equal(model.proj.bias, before["proj.bias"])
    assert torch.equal(model.norm.weight, before["norm.weight"])


def test_adamw_keeps_group_options_and_rejects_bad_config():
    model = Tiny()
    groups = [{"params": model.proj.parameters(), "lr_scale": 0.1}, {"params": model.norm.parameters()}]
    optimizer = AdamW().build(groups)
    assert [g.get("lr_scale") for g in optimizer.param_groups] == [0.1, 0.1, None]
    with pytest.raises(ValueError, match="betas must be two numbers"):
        AdamWConfig(betas=(0.9,))
    with pytest.raises(ValueError, match="no trainable parameters"):
        AdamW().build(model.frozen)


def test_adamw_uses_the_fused_kernel_where_it_can_with_the_same_update():
    """Unset, `fused` picks torch's fused kernel for plain CPU parameters; its update equals foreach's (the same
    hyperparameters reach it); fused=True on parameters the kernel cannot take is refused by name."""
    updated = {}
    for fused in (None, False):
        torch.manual_seed(0)
        model = Tiny()
        initial = [p.detach().clone() for p in model.parameters()]
        optimizer = AdamW(AdamWConfig(lr=0.1, weight_decay=0.3, betas=(0.8, 0.9), fused=fused)).build(model)
        assert [group["fused"] for group in optimizer.param_groups] == [True if fused is None else None] * 2
        for step in range(3):
            for p in model.parameters():
                p.grad = torch.randn_like(p) * (step + 1) if p.requires_grad else None
            optimizer.step()
        updated[fused] = [p.detach().clone() for p in model.parameters()]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(updated[None], updated[False]))
    assert not torch.allclose(updated[None][0], initial[0])  # the update was not empty
    with pytest.raises(ValueError, match="fused=True needs"):
        AdamW(AdamWConfig(fused=True)).build([nn.Parameter(torch.zeros(2, 2, device="meta"))])
    meta = AdamW(AdamWConfig()).build([nn.Parameter(torch.zeros(2, 2, device="meta"))])
    assert meta.param_groups[0]["fused"] is None  # unset: foreach where the fused kernel cannot go


@pytest.mark.parametrize(
    "config, expected",
    [
        (
            {"name": "polynomial_decay", "lr": 1.0, "warmup_updates": 4, "total_num_update": 12,
             "end_learning_rate": 0.2, "power": 2.0},
            {0: 0.0, 2: 0.5, 4: 1.0, 8: 0.4, 12: 0.2, 20: 0.2},
        ),
        (
            {"name": "polynomial_decay", "lr": 1.0, "warmup_ratio": 0.25, "warmup_init_lr": 0.1,
             "total_num_update": 12},
            {0: 0.1, 1: 0.4, 3: 1.0, 6: 2 / 3, 12: 0.0},
        ),
        (
            {"name": "cosine", "lr": 1.0, "warmup_updates": 2, "total_num_update": 6, "end_learning_rate": 0.1},
            {1: 0.5, 2: 1.0, 3: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)), 4: 0.55, 6: 0.1, 9: 0.1},
        ),
        ({"name": "inverse_sqrt", "lr": 1.0, "warmup_updates": 4}, {2: 0.5, 4: 1.0, 16: 0.5, 64: 0.25}),
        ({"name": "fixed", "lr": 0.3, "warmup_updates": 2}, {0: 0.0, 1: 0.15, 2: 0.3, 1000: 0.3}),
    ],
)
def test_scheduler_lr_at_matches_hand_values(config, expected):
    scheduler = build_lr_scheduler(config)
    for num_updates, lr in expected.items():
        assert scheduler.lr_at(num_updates) == pytest.approx(lr), num_updates


def test_scheduler_step_update_and_stateless_checkpoint_state():
    model = Tiny()
    groups = [{"params": model.proj.parameters(), "lr_scale": 0.5}, {"params": model.norm.parameters()}]
    optimizer = AdamW().build(groups)
    scheduler = build_lr_scheduler({"name": "fixed", "lr": 0.2})
    assert scheduler.step_update(optimizer, 7) == 0.2
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1, 0.1, 0.2])
    assert scheduler.state_dict() == {}
    scheduler.load_state_dict({})
    with pytest.raises(ValueError, match="stateless"):
        scheduler.load_state_dict({"best": 1.0})


def test_scheduler_config_errors():
    with pytest.raises(ValueError, match="total_num_update is required"):
        build_lr_scheduler("polynomial_decay")
    with pytest.raises(ValueError, match="not both"):
        build_lr_scheduler({"name": "cosine", "warmup_updates": 2, "warmup_ratio": 0.1, "total_num_update": 10})
    with pytest.raises(ValueError, match="must exceed the warmup"):
        build_lr_scheduler({"name": "cosine", "warmup_updates": 10, "total_num_update": 10})


class WithBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(2, 1)
        self.register_buffer("counter", torch.zeros(1))
        self.tied = nn.Linear(2, 2, bias=False)
        self.tied_again = nn.Linear(2, 2, bias=False)
        self.tied_again.weight = self.tied.weight


def set_weights(model, value):
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
        model.counter.fill_(value)


def test_ema_averages_parameters_and_copies_buffers():
    model = WithBuffer()
    set_weights(model, 1.0)
    ema = EMA(model, decay=0.75)
    set_weights(model, 5.0)
    ema.update(model)  # 0.75 * 1 + 0.25 * 5 = 2
    set_weights(model, 6.0)
    ema.update(model)  # 0.75 * 2 + 0.25 * 6 = 3
    assert torch.all(ema.shadow["proj.weight"] == 3.0)
    assert torch.all(ema.shadow["tied_again.weight"] == 3.0)  # tied weights averaged once, shared
    assert ema.shadow["tied.weight"] is ema.shadow["tied_again.weight"]
    assert ema.shadow["counter"].item() == 6.0
    with ema.apply_to(model):
        assert torch.all(model.proj.weight == 3.0) and model.counter.item() == 6.0
    assert torch.all(model.proj.weight == 6.0)


def test_ema_warmup_fp32_shadow_and_state_round_trip():
    model = WithBuffer().to(torch.bfloat16)
    ema = EMA(model, decay=0.9, warmup=True)
    assert ema.shadow["proj.weight"].dtype == torch.float32
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(1000) == 0.9
    set_weights(model, 2.0)
    ema.update(model)
    buffer = io.BytesIO()
    torch.save(ema.state_dict(), buffer)
    buffer.seek(0)
    restored = EMA(WithBuffer(), decay=0.9, warmup=True)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.num_updates == 1
    assert torch.equal(restored.shadow["proj.bias"], ema.shadow["proj.bias"])
    with pytest.raises(CheckpointError, match="EMA weights do not match"):
        restored.update(nn.Linear(2, 1))
