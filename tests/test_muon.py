"""The "muon" optimizer (Muon for the transformer layers' matrices, AdamW for the rest): hand computations, the
split of parameters, checkpoints, and training through the Trainer (with the conv patch stem) and ofasys-train."""
import pytest
import torch
from torch import nn

from ofasys_fs.adaptors.image_patch import ConvStem
from ofasys_fs.cli.train import main
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.optim.muon import Muon, MuonAdamW, MuonConfig, layer_matrices, orthogonalise
from ofasys_fs.registry import build_optimizer
from test_trainer import colour_task, copy_task, options, read_log, tokenizer  # noqa: F401 (a fixture)


class Layered(nn.Module):
    """An embedding, two linear layers inside `layers`, a norm and a head outside them."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.layers = nn.ModuleList([nn.Linear(6, 6), nn.Linear(6, 4)])
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 10)


def test_orthogonalise_gives_the_polar_factor_approximately():
    torch.manual_seed(0)
    for shape in [(8, 24), (24, 8), (16, 16)]:
        update = torch.randn(shape)
        u, _, vh = torch.linalg.svd(update, full_matrices=False)
        polar = u @ vh
        result = orthogonalise(update, steps=5)
        singular = torch.linalg.svdvals(result)
        assert result.shape == update.shape
        assert singular.min() > 0.3 and singular.max() < 1.3  # five steps: about [0.7, 1.2], less near 0
        cosine = (result * polar).sum() / (result.norm() * polar.norm())
        assert cosine > 0.95
        assert (orthogonalise(update, steps=0) - update / update.norm()).abs().max() < 1e-6


def test_muon_takes_the_layer_matrices_and_adamw_the_rest():
    model = Layered()
    assert [id(p) for p in layer_matrices(model)] == [id(model.layers[0].weight), id(model.layers[1].weight)]
    optimizer = build_optimizer({"name": "muon", "lr": 0.1, "weight_decay": 0.5}).build(model)
    assert isinstance(optimizer, MuonAdamW)
    muon, decayed, undecayed = optimizer.param_groups
    assert muon["muon"] and not decayed["muon"] and not undecayed["muon"]
    assert {id(p) for p in decayed["params"]} == {id(model.embed.weight), id(model.head.weight)}
    assert {id(p) for p in undecayed["params"]} == {
        id(p) for p in [model.layers[0].bias, model.layers[1].bias, model.norm.weight, model.norm.bias,
                        model.head.bias]}
    with pytest.raises(TypeError, match="needs the model"):
        Muon().build(list(model.parameters()))
    with pytest.raises(ValueError, match="no nn.Linear inside a `layers` list"):
        Muon().build(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(ValueError, match="momentum must be in"):
        MuonConfig(momentum=1.0)


def test_one_step_matches_hand_computation_and_adamw_where_adamw_applies():
    torch.manual_seed(1)
    model, twin = Layered(), Layered()
    twin.load_state_dict(model.state_dict())
    cfg = MuonConfig(lr=0.01, weight_decay=0.1, betas=(0.8, 0.9), momentum=0.9, muon_lr_scale=3.0)
    optimizer = Muon(cfg).build(model)
    reference = torch.optim.AdamW([p for n, p in twin.named_parameters() if n.startswith("embed")], lr=0.01,
                                  betas=(0.8, 0.9), weight_decay=0.1)
    grads = {name: torch.randn_like(p) for name, p in model.named_parameters()}
    before = model.layers[1].weight.detach().clone()
    for step in range(2):
        for (name, p), (_, q) in zip(model.named_parameters(), twin.named_parameters()):
            p.grad, q.grad = grads[name].clone(), grads[name].clone()
        optimizer.step()
        reference.step()
    assert torch.allclose(model.embed.weight, twin.embed.weight, atol=1e-6)
    # Muon, two steps of the same gradient g: buffers g and 1.9 g; Nesterov updates 1.9 g and 2.71 g: both
    # orthogonalise to the same matrix O, scaled by lr * 3 * 0.2 * sqrt(6), after decay by 1 - lr * wd.
    g = grads["layers.1.weight"]
    polar, lr = orthogonalise(g, 5), 0.01 * 3.0 * 0.2 * 6 ** 0.5
    expected = before
    for _ in range(2):
        expected = expected * (1 - 0.01 * 0.1) - lr * polar
    assert torch.allclose(model.layers[1].weight, expected, atol=1e-5)


def test_state_dict_round_trip_continues_the_same_run():
    torch.manual_seed(2)
    grads = [{name: torch.randn_like(p) for name, p in Layered().named_parameters()} for _ in range(4)]

    def run(resume_after=None):
        torch.manual_seed(3)
        model = Layered()
        optimizer = Muon(MuonConfig(lr=0.05)).build(model)
        for step, grad in enumerate(grads):
            if step == resume_after:
                state = optimizer.state_dict()
                optimizer = Muon(MuonConfig(lr=0.05)).build(model)
                optimizer.load_state_dict(state)
            for name, p in model.named_parameters():
                p.grad = grad[name].clone()
            optimizer.step()
        return model.state_dict()

    straight, resumed = run(), run(resume_after=2)
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)


def test_trainer_and_cli_train_with_muon_and_the_conv_stem(tokenizer, tmp_path):  # noqa: F811
    log = tmp_path / "api.jsonl"
    trainer = Trainer(**options(tokenizer, tmp_path / "api", optimizer="muon", patch_stem="conv", max_update=12,
                                no_save=True, sampling="round_robin", log_interval=1, log_file=str(log)))
    trainer.fit(tasks=[copy_task(count=16), colour_task(count=12)])
    losses = {}
    for record in read_log(log):
        for task, metrics in record["tasks"].items():
            if "loss" in metrics:
                losses.setdefault(task, []).append(metrics["loss"])
    assert losses["copy"][-1] < 0.8 * losses["copy"][0] and losses["colour"][-1] < 0.7 * losses["colour"][0]
    assert isinstance(trainer.optimizer, MuonAdamW)
    muon_group = trainer.optimizer.param_groups[0]
    assert muon_group["muon"] and all(trainer.optimizer.state[p]["momentum_buffer"].abs().sum() > 0
                                      for p in muon_group["params"])
    assert isinstance(trainer.model.encoder.adaptors["image_patch"].proj, ConvStem)
    save_dir = tmp_path / "cli"
    data = tmp_path / "copy.jsonl"
    data.write_text("".join(f'{{"src": "one two", "tgt": "{w}"}}\n' for w in ["one", "two"] * 4))
    args = ["--instruction", "copy [TEXT:src] -> [TEXT:tgt]", "--data", str(data), "--arch", "micro",
            "--tokenizer", tokenizer, "--num-bins", "16", "--num-codes", "0", "--batch-size", "4", "--device", "cpu",
            "--optimizer", "muon", "--save-dir", str(save_dir)]
    assert main(args + ["--max-update", "2"]) == 0
    state = torch.load(save_dir / "checkpoint_last.pt", weights_only=True)
    assert any("momentum_buffer" in entry for entry in state["optimizer"]["state"].values())
    assert main(args + ["--max-update", "3"]) == 0  # resumes from checkpoint_last.pt with Muon's state
    assert torch.load(save_dir / "checkpoint_last.pt", weights_only=True)["train_meta"]["num_updates"] == 3
