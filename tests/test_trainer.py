"""Trainer and ofasys-train: task schedule, batching, update_freq, checkpoints, resume, finetune, precision,
freezing, non-finite losses and the command line. Micro arch, a small trained tokenizer, data made here."""
import json
import math

import numpy as np
import pytest
import torch
import yaml

from ofasys_fs.adaptors.image_patch import ImagePatchAdaptor
from ofasys_fs.cli.train import main
from ofasys_fs.config import load_config
from ofasys_fs.contracts import SampleContext
from ofasys_fs.criteria.label_smoothed_ce import LabelSmoothedCE
from ofasys_fs.data.sampler import Sampling, task_for_step, task_probabilities
from ofasys_fs.engine.batches import TaskBatchPlan
from ofasys_fs.engine.config import TrainConfig
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.hub import OFASys
from ofasys_fs.errors import CheckpointError, ConfigError, TrainingError
from ofasys_fs.models.config import ModelConfig
from ofasys_fs.models.generalist import GeneralistModel
from ofasys_fs.registry import register_adaptor, register_criterion
from ofasys_fs.tasks.base import Task
from ofasys_fs.tokenizer import train_tokenizer
from ofasys_fs.vocab import Vocabulary

WORDS = "zero one two three four five six seven eight nine red green blue square circle what is the copy".split()
COPY = "copy [TEXT:src] -> [TEXT:tgt]"
IMAGE_COLOUR = "[IMAGE:img] what is the colour? -> [TEXT:label]"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer([" ".join(WORDS)] * 20, 300, path)
    return str(path)


def options(tokenizer: str, save_dir, **overrides) -> dict:
    """Trainer options of a fast micro run."""
    base = dict(arch="micro", dropout=0.0, device="cpu", tokenizer=tokenizer, num_bins=16, num_codes=0,
                batch_size=4, max_update=4, lr=1e-3, save_dir=str(save_dir), log_interval=2, seed=3)
    return {**base, **overrides}


def copy_rows(count: int, offset: int = 0) -> list[dict]:
    return [{"src": f"{WORDS[(i + offset) % 10]} {WORDS[(i * 3) % 10]}", "tgt": WORDS[(i + offset) % 10]}
            for i in range(count)]


def copy_task(name: str = "copy", count: int = 16, valid: int = 0, **kwargs) -> Task:
    task = Task(name=name, instruction=COPY, **kwargs).add_dataset(copy_rows(count), "train")
    return task.add_dataset(copy_rows(valid, 5), "valid") if valid else task


def colour_task(count: int = 8, name: str = "colour", instruction: str = IMAGE_COLOUR) -> Task:
    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    rows = [{"img": np.full((32, 32, 3), rgb, dtype=np.uint8), "label": label}
            for i in range(count) for label, rgb in [list(colours.items())[i % 3]]]
    return Task(name=name, instruction=instruction).add_dataset(rows, "train")


def parameters(model) -> dict:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def read_log(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


# ---- task schedule and batching ---------------------------------------------------------------


def test_task_schedule_is_a_pure_function_and_realises_the_requested_mix():
    sampling = Sampling.parse("proportional", ["big", "small"])
    probs = task_probabilities(sampling, [300, 100])
    schedule = [task_for_step(sampling, probs, 7, update, step, 2)[0] for update in range(1500) for step in range(2)]
    again = [task_for_step(sampling, probs, 7, update, step, 2)[0] for update in range(1500) for step in range(2)]
    assert schedule == again
    assert abs(schedule.count(1) / len(schedule) - 0.25) < 0.03
    other_seed = [task_for_step(sampling, probs, 8, update, 0, 1)[0] for update in range(200)]
    assert other_seed != schedule[::2][:200]
    tempered = task_probabilities(Sampling.parse("temperature=2", ["big", "small"]), [300, 100])
    assert tempered[1] == pytest.approx(10 / (10 + 300**0.5))
    robin = Sampling.parse("round_robin", ["a", "b", "c"])
    assert [task_for_step(robin, np.ones(3) / 3, 1, u, s, 2)[0] for u in range(3) for s in range(2)] == [0, 1, 2, 0, 1, 2]
    every = Sampling.parse("all", ["a", "b"])
    assert task_for_step(every, np.ones(2) / 2, 1, 5, 0, 1) == [0, 1]
    weights = Sampling.parse("weights=a:1,b:3", ["a", "b"])
    assert list(task_probabilities(weights, [1000, 1])) == [0.25, 0.75]
    with pytest.raises(ValueError, match="missing: b"):
        Sampling.parse("weights=a:1", ["a", "b"])


def test_max_tokens_batches_cover_each_row_once_within_budget_and_bucket_lengths():
    lengths = np.random.default_rng(0).integers(1, 40, size=200)
    plan = TaskBatchPlan("t", 200, seed=1, batch_size=16, max_tokens=120, lengths=lengths)
    batches = plan.batches(0)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(200))
    assert all(len(b) * lengths[b].max() <= 120 for b in batches)
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    random_spread = np.mean([np.ptp(lengths[rows[i:i + 8]]) for i in range(0, 200, 8)])
    assert spread < random_spread / 4  # rows of a batch have similar lengths
    assert len(set(map(len, batches))) > 3  # short rows get bigger batches
    again = TaskBatchPlan("t", 200, seed=1, batch_size=16, max_tokens=120, lengths=lengths)
    assert [b.tolist() for b in again.batches(0)] == [b.tolist() for b in batches]
    assert [b.tolist() for b in plan.batches(1)] != [b.tolist() for b in batches]
    with pytest.raises(ValueError, match="row 3: 50 tokens, more than --max-tokens 45"):
        TaskBatchPlan("t", 5, 1, 16, max_tokens=45, lengths=np.array([1, 2, 3, 50, 4])).batches(0)


def test_max_tokens_training_runs_on_length_bucketed_batches(tokenizer, tmp_path):
    trainer = Trainer(**options(tokenizer, tmp_path, max_tokens=60, max_update=3, no_save=True))
    trainer.fit(tasks=[copy_task(count=24)])
    plan = trainer.batches.feeds[0].plan
    assert trainer.num_updates == 3 and plan.max_tokens == 60
    assert max(len(b) for b in plan.batches(0)) > 4  # the token budget, not batch_size, sizes batches


# ---- the update ----------------------------------------------------------------------------------


def test_update_freq_and_activation_checkpointing_give_the_gradients_of_one_plain_batch(tokenizer, tmp_path):
    grads = []
    for batch_size, update_freq, recompute in [(8, 1, False), (4, 2, False), (8, 1, True)]:
        trainer = Trainer(**options(tokenizer, tmp_path, batch_size=batch_size, update_freq=update_freq,
                                    checkpoint_activations=recompute, max_update=1, clip_norm=0.0, no_save=True))
        model = trainer.fit(tasks=[copy_task(count=8)])
        assert model.cfg.checkpoint_activations == recompute
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    for other in grads[1:]:
        assert other.keys() == grads[0].keys() and other
        for name in grads[0]:
            torch.testing.assert_close(other[name], grads[0][name], rtol=1e-4, atol=1e-7, msg=name)


def test_sentence_avg_divides_the_gradient_by_rows_instead_of_target_tokens(tokenizer, tmp_path):
    grads, logs = [], []
    for sentence_avg in (False, True):
        log = tmp_path / f"log_{sentence_avg}.jsonl"
        trainer = Trainer(**options(tokenizer, tmp_path, batch_size=8, max_update=1, clip_norm=0.0, no_save=True,
                                    sentence_avg=sentence_avg, log_interval=1, log_file=str(log)))
        model = trainer.fit(tasks=[copy_task(count=8)])
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
        logs.append(read_log(log)[-1])
    tokens_per_row = logs[0]["wpb"] / logs[0]["bsz"]
    assert tokens_per_row > 1.5
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name] * tokens_per_row, rtol=1e-4, atol=1e-7, msg=name)


def test_loss_scale_weighting_scales_a_task_by_the_mean_running_loss_over_its_own(tokenizer, tmp_path):
    """Round robin copy, colour, copy: the first two updates have weight 1 (one running loss each), so the third
    starts from the same weights in both runs and its gradient is scaled by (copy + colour) / (2 copy)."""
    grads, logs = [], []
    for weighting in ("fixed", "loss_scale"):
        log = tmp_path / f"log_{weighting}.jsonl"
        trainer = Trainer(**options(tokenizer, tmp_path / weighting, max_update=3, clip_norm=0.0, sampling="round_robin",
                                    task_weighting=weighting, log_interval=1, log_file=str(log)))
        model = trainer.fit(tasks=[copy_task(), colour_task()])
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
        logs.append(read_log(log))
    trained = [{task: log for task, log in update["tasks"].items() if "loss" in log} for update in logs[1]]
    first, second = trained[:2]
    assert [list(update) for update in trained] == [["copy"], ["colour"], ["copy"]]
    weight = (first["copy"]["loss"] + second["colour"]["loss"]) / (2 * first["copy"]["loss"])
    assert abs(weight - 1) > 0.01  # far beyond the rtol below
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name] * weight, rtol=1e-4, atol=1e-7, msg=name)
    stored = torch.load(tmp_path / "loss_scale" / "checkpoint_last.pt", weights_only=True)["train_meta"]
    assert set(stored["task_loss_scale"]) == {"copy", "colour"}


def test_dataloader_workers_do_not_change_training(tokenizer, tmp_path):
    results = []
    for workers in (0, 2):
        trainer = Trainer(**options(tokenizer, tmp_path, num_workers=workers, max_update=2, no_save=True))
        results.append(parameters(trainer.fit(tasks=[copy_task(), colour_task()])))
    for name in results[0]:
        assert torch.equal(results[0][name], results[1][name]), name


def test_saving_and_validating_do_not_change_training(tokenizer, tmp_path):
    """With dropout on, a run that validates and saves every 2 updates ends with the weights of one that does
    neither: neither draws from the training's random streams."""
    results = []
    for quiet in (True, False):
        extra = dict(no_save=True, disable_validation=True) if quiet else dict(save_interval_updates=2,
                                                                                validate_interval_updates=2)
        trainer = Trainer(**options(tokenizer, tmp_path / str(quiet), dropout=0.1, max_update=6, **extra))
        results.append(parameters(trainer.fit(tasks=[copy_task(valid=4), colour_task()])))
    assert (tmp_path / "False" / "checkpoint_4.pt").exists()
    for name in results[0]:
        assert torch.equal(results[0][name], results[1][name]), name


def test_bf16_training_on_cpu_runs_and_lowers_the_loss(tokenizer, tmp_path):
    trainer = Trainer(**options(tokenizer, tmp_path, bf16=True, max_update=24, lr=3e-3, log_interval=4,
                                lr_scheduler="fixed"))
    trainer.fit(tasks=[copy_task(count=16)])
    losses = [record["loss"] for record in read_log(tmp_path / "train_log.jsonl")]
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0]
    encoder = trainer.encoders["copy"]
    sample = encoder.collate([encoder.encode(row, SampleContext(split="valid", task="copy")) for row in copy_rows(2)])
    with trainer.autocast():
        assert trainer.model(sample)[0].dtype == torch.bfloat16
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        Trainer(**options(tokenizer, tmp_path, fp16=True)).fit(tasks=[copy_task()])


def test_freeze_encoder_keeps_encoder_weights_but_trains_the_decoder_and_shared_table(tokenizer, tmp_path):
    model = GeneralistModel(arch="micro", dropout=0.0)
    trainer = Trainer(**options(tokenizer, tmp_path, freeze_encoder=True, max_update=2, no_save=True))
    trainer.setup(model, [copy_task()])
    before = parameters(model)
    trainer.train_loop()
    after = parameters(model)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    encoder_own = {n for n in before if n.startswith("encoder.") and "embed_tokens" not in n}
    assert encoder_own and not changed & encoder_own
    assert "embed_tokens.weight" in changed and any(n.startswith("decoder.layers") for n in changed)


@register_adaptor("test_patch_with_backbone")
class PatchWithBackbone(ImagePatchAdaptor):
    """image_patch whose patch projection is a backbone that --freeze-image-backbone freezes."""

    def freeze_backbone(self):
        self.proj.requires_grad_(False)


def test_an_image_slot_size_gives_its_task_its_own_image_side_in_training_and_after_loading(tokenizer, tmp_path,
                                                                                           monkeypatch):
    small = colour_task(name="small", instruction=IMAGE_COLOUR.replace("[IMAGE:img]", "[IMAGE:img,size=16]"))
    grids, forward = [], ImagePatchAdaptor.forward

    def recording(adaptor, batch):
        out = forward(adaptor, batch)
        grids.append((batch.get("task"), out.grid))
        return out

    monkeypatch.setattr(ImagePatchAdaptor, "forward", recording)
    Trainer(**options(tokenizer, tmp_path, sampling="round_robin")).fit(tasks=[colour_task(), small])
    assert set(grids) == {("colour", (4, 4)), ("small", (2, 2))}  # micro: image_size 32 in 8 px patches
    grids.clear()
    hub = OFASys.from_pretrained(str(tmp_path / "checkpoint_last.pt"), device="cpu")
    hub.inference(small.templates[0].text, [{"img": np.full((40, 24, 3), 200, dtype=np.uint8)}])
    assert [grid for _, grid in grids] == [(2, 2)]
    for size, reason in ((20, "size=20 must be at most the model's image_size=32 and a multiple of its patch_size=8"),
                         (64, "size=64 must be at most the model's image_size=32")):
        bad = colour_task(name="small", instruction=IMAGE_COLOUR.replace("[IMAGE:img]", f"[IMAGE:img,size={size}]"))
        with pytest.raises(ConfigError, match=f"task 'small': cannot build the slot .*{reason}"):
            Trainer(**options(tokenizer, tmp_path / "bad", no_save=True)).fit(tasks=[bad])


def test_freeze_image_backbone_freezes_backbones_and_needs_one(tokenizer, tmp_path):
    task = colour_task()
    task.templates = Task(instruction="[IMAGE:img,adaptor=test_patch_with_backbone] colour? -> [TEXT:label]").templates
    trainer = Trainer(**options(tokenizer, tmp_path, freeze_image_backbone=True, no_save=True))
    trainer.setup(None, [task])
    adaptor = trainer.model.encoder.adaptors["test_patch_with_backbone"]
    assert not any(p.requires_grad for p in adaptor.proj.parameters())
    assert all(p.requires_grad for p in adaptor.layer_norm.parameters())
    with pytest.raises(ValueError, match="has a backbone"):
        Trainer(**options(tokenizer, tmp_path, freeze_image_backbone=True, no_save=True)).setup(None, [colour_task()])


@register_criterion("test_nan_on_poisoned_rows")
class NanOnPoisonedRows(LabelSmoothedCE):
    """Label-smoothed CE whose loss is NaN for batches holding a row with "poison": True."""

    def forward(self, model, sample):
        loss, size, log = super().forward(model, sample)
        if any(row.get("poison") for row in sample["rows"]):
            return loss * math.nan, size, {**log, "loss": math.nan}
        return loss, size, log


def poisoned_copy_task(criterion: str, poisoned) -> Task:
    """The 8-row copy task trained with `criterion`, its rows at indices `poisoned` marked "poison": True."""
    rows = [{**row, "poison": index in poisoned} for index, row in enumerate(copy_rows(8))]
    return Task(name="copy", instruction=COPY, criterion=criterion).add_dataset(rows, "train")


def test_non_finite_losses_skip_the_update_and_too_many_in_a_row_stop(tokenizer, tmp_path, capsys):
    task = poisoned_copy_task("test_nan_on_poisoned_rows", [2])
    trainer = Trainer(**options(tokenizer, tmp_path, batch_size=1, max_update=8, no_save=True))
    model = trainer.fit(tasks=[task])
    assert trainer.num_updates == 8
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert "skipped: a non-finite loss in task 'copy', rows [2]" in capsys.readouterr().out
    task = poisoned_copy_task("test_nan_on_poisoned_rows", range(8))
    with pytest.raises(TrainingError, match="5 updates in a row were skipped"):
        Trainer(**options(tokenizer, tmp_path, no_save=True)).fit(tasks=[task])


@register_criterion("test_overflow_on_poisoned_rows")
class OverflowOnPoisonedRows(LabelSmoothedCE):
    """Label-smoothed CE whose gradients are infinite for batches holding a poisoned row (its logged loss stays
    finite): what overflowing fp16 gradients look like to the GradScaler."""

    def forward(self, model, sample):
        loss, size, log = super().forward(model, sample)
        return (loss * math.inf if any(row.get("poison") for row in sample["rows"]) else loss), size, log


class ScaledTrainer(Trainer):
    """fp16 is CUDA-only; a CPU GradScaler exercises the same overflow path on fp32 gradients."""

    def setup(self, model, tasks) -> None:
        super().setup(model, tasks)
        self.scaler = torch.amp.GradScaler("cpu")


def test_an_fp16_overflow_skips_that_update_lowers_the_scale_and_is_not_counted(tokenizer, tmp_path, capsys):
    task = poisoned_copy_task("test_overflow_on_poisoned_rows", [2])
    trainer = ScaledTrainer(**options(tokenizer, tmp_path, batch_size=1, max_update=8, no_save=True))
    model = trainer.fit(tasks=[task])
    output = capsys.readouterr().out
    assert trainer.num_updates == 8 and trainer.scaler.get_scale() == 32768.0
    assert output.count("skipped: fp16 gradient overflow, loss scale 65536 -> 32768") == 1, output
    assert "non-finite" not in output
    assert all(torch.isfinite(p).all() for p in model.parameters())
    task = poisoned_copy_task("test_overflow_on_poisoned_rows", range(8))
    with pytest.raises(TrainingError, match=r"the fp16 loss scale fell to 6.10352e-05 \(below 0.0001\)"):
        ScaledTrainer(**options(tokenizer, tmp_path, no_save=True)).fit(tasks=[task])


# ---- checkpoints ---------------------------------------------------------------------------------


def test_checkpoint_has_the_design_keys_loads_weights_only_and_rebuilds_the_model(tokenizer, tmp_path):
    trainer = Trainer(**options(tokenizer, tmp_path, ema_decay=0.9, save_interval_updates=2, keep_last_n=1))
    trainer.fit(tasks=[copy_task(valid=4), colour_task()])
    names = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert names == ["checkpoint_4.pt", "checkpoint_best.pt", "checkpoint_last.pt"]
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert sorted(state) == sorted(["version", "model", "ema", "optimizer", "lr_scheduler", "sampler", "rng", "vocab",
                                    "config", "tasks", "user_dirs", "train_meta", "image_tokenizers"])
    assert state["image_tokenizers"] == {}  # no task generates images
    assert state["train_meta"]["num_updates"] == 4 and state["train_meta"]["best_weights"] == "ema"
    assert state["sampler"]["num_updates"] == 4 and set(state["sampler"]["tasks"]) == {"copy", "colour"}
    assert Vocabulary.from_dict(state["vocab"]) == trainer.vocab
    assert [Task.from_dict(t).name for t in state["tasks"]] == ["copy", "colour"]
    config = state["config"]
    assert load_config(TrainConfig, **{k: v for k, v in config["train"].items()}) == trainer.cfg
    rebuilt = GeneralistModel(ModelConfig(**config["model"])).build(config["vocab_size"], config["adaptor_names"])
    rebuilt.load_state_dict(state["model"])
    assert config["data"]["image_size"] == 32


def test_resume_continues_exactly_like_an_uninterrupted_run(tokenizer, tmp_path):
    def run(save_dir, max_update):
        trainer = Trainer(**options(tokenizer, save_dir, dropout=0.1, ema_decay=0.8, max_update=max_update,
                                    lr_scheduler="inverse_sqrt", warmup_updates=2, batch_size=3,
                                    task_weighting="loss_scale"))
        return trainer.fit(tasks=[copy_task(count=10), copy_task("copy2", count=7)])

    straight = parameters(run(tmp_path / "a", 6))
    run(tmp_path / "b", 3)
    resumed = parameters(run(tmp_path / "b", 6))
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=1e-6, msg=name)
    ema = [torch.load(p / "checkpoint_last.pt", weights_only=True)["ema"] for p in (tmp_path / "a", tmp_path / "b")]
    assert ema[0]["num_updates"] == ema[1]["num_updates"] == 6
    first = torch.load(tmp_path / "a" / "checkpoint_last.pt", weights_only=True)
    second = torch.load(tmp_path / "b" / "checkpoint_last.pt", weights_only=True)
    assert first["sampler"] == second["sampler"]
    fewer_tasks = options(tokenizer, tmp_path / "b", max_update=6)
    with pytest.raises(CheckpointError, match="--reset-dataloader"):
        Trainer(**fewer_tasks).fit(tasks=[copy_task(count=10)])
    assert Trainer(**fewer_tasks, reset_dataloader=True).fit(tasks=[copy_task(count=10)]) is not None
    with pytest.raises(CheckpointError, match="missing.pt does not exist"):
        Trainer(**options(tokenizer, tmp_path / "b", restore_file="missing.pt")).fit(tasks=[copy_task()])


def test_finetune_onto_a_new_task_set_reports_keys_and_checks_the_vocabulary(tokenizer, tmp_path):
    Trainer(**options(tokenizer, tmp_path / "pre", max_update=2)).fit(tasks=[copy_task()])
    pretrained = torch.load(tmp_path / "pre" / "checkpoint_last.pt", weights_only=True)["model"]
    trainer = Trainer(**options(tokenizer, tmp_path / "ft", finetune_from_model=str(tmp_path / "pre" / "checkpoint_last.pt"),
                                max_update=1, lr=0.0, lr_scheduler="fixed", weight_decay=0.0))
    model = trainer.fit(tasks=[copy_task(), colour_task()])
    report = trainer.finetune_report
    assert report.missing and all(key.startswith("encoder.adaptors.image_patch.") for key in report.missing)
    assert report.unexpected == []
    current = model.state_dict()
    assert all(torch.equal(current[key], value) for key, value in pretrained.items())  # lr 0: still the loaded weights
    with pytest.raises(CheckpointError, match="another vocabulary"):
        Trainer(**options(tokenizer, tmp_path / "ft2", num_bins=32,
                          finetune_from_model=str(tmp_path / "pre" / "checkpoint_last.pt"))).fit(tasks=[copy_task()])


# ---- ofasys-train --------------------------------------------------------------------------------


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_cli_trains_from_yaml_with_overrides_and_from_flags(tokenizer, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "train.jsonl", copy_rows(12))
    write_jsonl(data / "valid.jsonl", copy_rows(4))
    config = {"model": {"arch": "micro"}, "vocab": {"tokenizer": tokenizer, "num_bins": 16, "num_codes": 0},
              "common": {"device": "cpu"}, "max_update": 50,
              "tasks": [{"name": "copy", "instruction": COPY, "data": str(data), "weight": 2.0}]}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main([str(tmp_path / "run.yaml"), "max_update=2", f"save_dir={tmp_path / 'yaml'}", "--batch-size", "3"]) == 0
    state = torch.load(tmp_path / "yaml" / "checkpoint_last.pt", weights_only=True)
    assert state["train_meta"]["num_updates"] == 2 and state["tasks"][0]["weight"] == 2.0
    assert state["config"]["train"]["dataset"]["batch_size"] == 3
    assert "best" in state["train_meta"] and state["train_meta"]["best"] is not None  # valid.jsonl was found
    assert "max_update: 2" in capsys.readouterr().out  # the resolved config is printed first
    argv = ["--instruction", COPY, "--data", str(data / "train.jsonl"), "--arch", "micro", "--tokenizer", tokenizer,
            "--num-bins", "16", "--num-codes", "0", "--device", "cpu", "--max-update", "2", "--max-tokens", "20",
            "--save-dir", str(tmp_path / "flags"), "--log-format", "json", "--log-interval", "1",
            "--tensorboard-logdir", str(tmp_path / "tb")]
    assert main(argv) == 0
    state = torch.load(tmp_path / "flags" / "checkpoint_last.pt", weights_only=True)
    assert state["tasks"][0]["name"] == "tgt" and state["train_meta"]["num_updates"] == 2
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["update"] for r in records if r["split"] == "train"] == [1, 2]
    assert {"loss", "ppl", "wps", "ups", "wpb", "bsz", "gnorm", "clip", "lr"} <= set(records[0])
    assert {"loss", "nll_loss", "ppl", "token_accuracy", "mix", "mix_requested"} <= set(records[0]["tasks"]["tgt"])
    assert list((tmp_path / "tb" / "train").glob("events.out.tfevents.*"))


def test_cli_print_config_round_trips_and_errors_are_one_line(tokenizer, tmp_path, capsys):
    argv = ["--instruction", COPY, "--data", "rows.jsonl", "--arch", "micro", "lr=3e-4", "--print-config"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    (tmp_path / "printed.yaml").write_text(printed)
    assert main([str(tmp_path / "printed.yaml"), "--print-config"]) == 0
    assert capsys.readouterr().out == printed
    cfg = load_config(TrainConfig, str(tmp_path / "printed.yaml"))
    assert cfg.optimization.lr == 3e-4 and cfg.tasks[0].instruction == COPY and not cfg.common.print_config
    assert main(["--data", "rows.jsonl"]) == 1
    assert "needs --task NAME" in capsys.readouterr().err
    assert main([str(tmp_path / "printed.yaml"), "--task", "caption", "--data", "x"]) == 1
    assert "both in the config" in capsys.readouterr().err


def test_initial_weights_depend_on_the_seed_alone(image_tokenizer, tokenizer, tmp_path):
    """The first load of an image tokenizer file in a process builds its modules (drawing from torch's global RNG)
    before the model is built; the model's initial weights are the same whether that happened or not."""
    import shutil

    from conftest import text_to_image_rows

    fresh = tmp_path / "tokenizer.pt"
    shutil.copy(image_tokenizer.path, fresh)  # a path this process has not loaded yet
    task = Task(name="draw", instruction="[TEXT:text] draw it -> [IMAGE:img]").add_dataset(
        text_to_image_rows()[0][:8], "train")
    weights = []
    for run in range(2):  # the first run loads the file, the second finds it memoised
        trainer = Trainer(**options(tokenizer, tmp_path / f"run{run}", image_tokenizer=str(fresh), num_codes=None))
        trainer.setup(None, [task])
        weights.append(parameters(trainer.model))
        trainer.close()
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
