"""Trainer: the single-process training loop over many tasks (DESIGN §8).

`Trainer(**options).fit(model, tasks)` and `ofasys-train` are one code path. The loop is plain
PyTorch: for each update, run update_freq micro-batches (one task each, as the schedule says), sum
their losses, normalise the gradients by the update's sample size, clip, set the learning rate,
step, update the EMA; validate and save at the configured intervals.
"""
from __future__ import annotations

import dataclasses
import math
import os
from contextlib import nullcontext
from typing import Any, Optional, Sequence

import torch
from torch import nn

from .. import load_builtins
from ..config import config_to_dict, load_config
from ..configs import TrainConfig
from ..data.encode import RowEncoder
from ..models.generalist import GeneralistModel
from ..registry import (
    CRITERION_REGISTRY, LR_SCHEDULER_REGISTRY, OPTIMIZER_REGISTRY, import_user_dir, imported_user_dirs,
)
from ..tasks.base import Task
from ..vocab import Vocabulary
from . import optim as _builtin_optim  # noqa: F401  (registers adamw and the lr schedulers)
from . import state as checkpoint_state
from .batches import DataConfig, train_batches, valid_loader
from .checkpoint import load_checkpoint
from .ema import EMA
from .logging import TrainLogger, base2_reduce

MAX_CONSECUTIVE_BAD_STEPS = 5  # non-finite losses in a row before training stops


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def move_to(value: Any, device: torch.device) -> Any:
    """Tensors of a (nested) sample moved to the device; other values kept."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {key: move_to(item, device) for key, item in value.items()}
    if isinstance(value, list):
        return [move_to(item, device) for item in value]
    return value


def config_fields(registry: Any, name: str) -> set:
    """Option names of a registered component's config dataclass (empty without one)."""
    entry = registry.get(name)
    return {field.name for field in dataclasses.fields(entry.dataclass)} if entry.dataclass else set()


def build_from_registry(registry: Any, name: str, options: dict) -> Any:
    """Build a registered component with the options its config declares (a plugin may declare fewer)."""
    fields = config_fields(registry, name)
    return registry.build({"name": registry.get(name).name, **{k: v for k, v in options.items() if k in fields}})


def adaptor_names(tasks: Sequence[Any]) -> set:
    """Every adaptor the templates of the tasks (or anything with `.templates`) feed: "text" for text
    groups, the slot's adaptor otherwise (None = the arch's image adaptor)."""
    names = {"text"}
    for task in tasks:
        for template in task.templates:
            for piece in template.encoder:
                names.add((piece.adaptor or "text") if piece.text_like else piece.adaptor)
    return names


def reducer(criterion: nn.Module):
    """The criterion's `reduce_metrics` (logging outputs -> loss, ppl, ...), or fairseq's base-2 default."""
    return getattr(type(criterion), "reduce_metrics", base2_reduce)


def row_ids(sample: dict) -> list:
    """The row indices of a batch, for messages."""
    return sample["id"].tolist() if "id" in sample else []


class Trainer:
    """Trains one GeneralistModel on many tasks; `Trainer(max_update=..., lr=..., ...)` takes any flat
    option of TrainConfig (docs/config.md), or a resolved `config`."""

    def __init__(self, config: Optional[TrainConfig] = None, **options: Any):
        if config is not None and options:
            raise TypeError("Trainer: pass a TrainConfig or keyword options, not both")
        self.cfg: TrainConfig = config if config is not None else load_config(TrainConfig, **options)
        self.model: Optional[GeneralistModel] = None
        self.num_updates = 0
        self.finetune_report = None

    # ----------------------------------------------------------------------------------- set-up

    def fit(self, model: Optional[GeneralistModel] = None, tasks: Optional[Sequence[Task]] = None) -> GeneralistModel:
        """Train `model` (built from the `model` config section when None) on `tasks` (from the config's
        `tasks` list when None); writes checkpoints to save_dir and returns the trained model."""
        self.setup(model, tasks)
        try:
            self.train_loop()
        finally:
            self.batches.close()
            self.logger.close()
        return self.model

    def setup(self, model: Optional[GeneralistModel], tasks: Optional[Sequence[Task]]) -> None:
        cfg = self.cfg
        load_builtins()
        for path in cfg.common.user_dir:
            import_user_dir(path)
        torch.manual_seed(cfg.common.seed)
        self.device = resolve_device(cfg.common.device)
        if cfg.common.fp16 and self.device.type != "cuda":
            raise ValueError(f"fp16 needs a CUDA device (device is {self.device}); use --bf16 on CPU")
        self.tasks = self.check_tasks(tasks)
        self.vocab = self.build_vocab()
        self.model = self.prepare_model(model)
        self.data_cfg = DataConfig.resolve(cfg.dataset, self.model.cfg)
        self.encoders = {task.name: RowEncoder.for_task(task, self.vocab, self.data_cfg) for task in self.tasks}
        self.criteria = {task.name: self.build_criterion(task) for task in self.tasks}
        opt = cfg.optimization
        self.optimizer = build_from_registry(OPTIMIZER_REGISTRY, opt.optimizer, {
            "lr": opt.lr, "betas": opt.adam_betas, "eps": opt.adam_eps, "weight_decay": opt.weight_decay,
        }).build(self.model)
        self.lr_scheduler = self.build_lr_scheduler()
        self.ema = EMA(self.model, opt.ema_decay) if opt.ema_decay else None
        self.scaler = torch.amp.GradScaler("cuda") if cfg.common.fp16 else None
        meta = self.load_initial_state()
        self.num_updates = int(meta.get("num_updates", 0))
        self.done_at = {"validate": self.num_updates, "save": self.num_updates} if meta else {}
        same_metric = meta.get("best_checkpoint_metric") == cfg.checkpoint.best_checkpoint_metric
        self.best = meta.get("best") if same_metric else None
        self.validations_without_improvement = int(meta.get("validations_without_improvement", 0))
        self.bad_steps = 0
        sampler = meta.get("sampler")
        self.batches = train_batches(self.tasks, self.encoders, cfg, sampler["tasks"] if sampler else None)
        self.logger = self.make_logger()
        if "meters" in meta:
            self.logger.load_state_dict(meta["meters"])
        if self.scaler is not None and "grad_scaler" in meta:
            self.scaler.load_state_dict(meta["grad_scaler"])
        if "rng" in meta:
            checkpoint_state.set_rng_state(meta["rng"])
        self.describe_run()

    def check_tasks(self, tasks: Optional[Sequence[Task]]) -> list[Task]:
        if tasks is None and self.cfg.tasks:
            from ..cli.train import tasks_from_config

            tasks = tasks_from_config(self.cfg.tasks)
        if not tasks:
            raise ValueError("Trainer.fit needs tasks: fit(tasks=[Task(...), ...]) or a `tasks` list in the config")
        names = [task.name for task in tasks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"task names must be unique (they key logs and checkpoints); repeated: {duplicates}")
        for task in tasks:
            if "train" not in task.datasets or len(task.datasets["train"]) == 0:
                raise ValueError(f"task {task.name!r} has no training rows: call task.add_dataset(rows, 'train')")
        return list(tasks)

    def build_vocab(self) -> Vocabulary:
        section = self.cfg.vocab
        sizes = {"num_bins": section.num_bins, "num_codes": section.num_codes}
        if section.tokenizer:
            return Vocabulary.from_tokenizer_file(section.tokenizer, **sizes)
        return Vocabulary.default(**sizes)

    def prepare_model(self, model: Optional[GeneralistModel]) -> GeneralistModel:
        """Build the model for this vocabulary and the tasks' adaptors, move it, apply the model switches."""
        cfg = self.cfg
        if model is None:
            section = config_to_dict(cfg.model)
            overrides = {key: value for key, value in section.items() if value is not None}
            model = GeneralistModel(
                max_source_positions=cfg.dataset.max_source_positions,
                max_target_positions=cfg.dataset.max_target_positions, **overrides,
            )
        needed = {name or model.cfg.image_adaptor for name in adaptor_names(self.tasks)}
        if not model.is_built:
            model.build(self.vocab, needed)
        elif model.vocab_size != len(self.vocab) or not needed <= set(model.adaptor_names):
            raise ValueError(
                f"the model passed to fit was built for {model.vocab_size} tokens and adaptors "
                f"{sorted(model.adaptor_names)}; the vocabulary has {len(self.vocab)} and the tasks need "
                f"{sorted(needed)}. Pass an unbuilt GeneralistModel(...) and fit builds it"
            )
        if cfg.optimization.checkpoint_activations:
            model.cfg.checkpoint_activations = True
        self.freeze(model)
        return model.to(self.device)

    def freeze(self, model: GeneralistModel) -> None:
        """--freeze-encoder (the shared embedding table stays trainable: the decoder uses it too) and
        --freeze-image-backbone (`freeze_backbone()` of every module that has one, e.g. image_resnet)."""
        opt = self.cfg.optimization
        if opt.freeze_encoder:
            shared = {id(p) for p in model.embed_tokens.parameters()}
            for parameter in model.encoder.parameters():
                if id(parameter) not in shared:
                    parameter.requires_grad_(False)
        if opt.freeze_image_backbone:
            with_backbone = [module for module in model.modules() if hasattr(module, "freeze_backbone")]
            if not with_backbone:
                raise ValueError(
                    f"--freeze-image-backbone: none of the model's adaptors {sorted(model.adaptor_names)} has a "
                    f"backbone (image_patch has none; image_resnet has one)"
                )
            for module in with_backbone:
                module.freeze_backbone()

    def build_criterion(self, task: Task) -> nn.Module:
        options = {"label_smoothing": self.cfg.optimization.label_smoothing}
        return build_from_registry(CRITERION_REGISTRY, task.criterion, options).to(self.device)

    def build_lr_scheduler(self) -> Any:
        opt = self.cfg.optimization
        if "total_num_update" in config_fields(LR_SCHEDULER_REGISTRY, opt.lr_scheduler) and not opt.max_update:
            raise ValueError(f"lr_scheduler {opt.lr_scheduler} decays until max_update; set max_update > 0 "
                             f"or use lr_scheduler=inverse_sqrt or fixed")
        return build_from_registry(LR_SCHEDULER_REGISTRY, opt.lr_scheduler, {
            "lr": opt.lr, "warmup_updates": opt.warmup_updates, "warmup_ratio": opt.warmup_ratio,
            "warmup_init_lr": opt.warmup_init_lr, "total_num_update": opt.max_update or None,
            "end_learning_rate": opt.end_learning_rate, "power": opt.power,
        })

    def load_initial_state(self) -> dict:
        """Resume from the restore file when it exists, else start from --finetune-from-model's weights,
        else from scratch. Returns the train_meta to continue from."""
        ckpt_cfg = self.cfg.checkpoint
        path = checkpoint_state.restore_path(ckpt_cfg)
        if path is not None:
            state = load_checkpoint(path)
            meta = checkpoint_state.restore_training(
                state, path, model=self.model, ema=self.ema, optimizer=self.optimizer,
                lr_scheduler=self.lr_scheduler, checkpoint_cfg=ckpt_cfg, vocab=self.vocab,
            )
            print(f"resuming from {path} at update {meta.get('num_updates', 0)}", flush=True)
            return {**meta, "rng": state["rng"]}
        if ckpt_cfg.finetune_from_model:
            state = load_checkpoint(ckpt_cfg.finetune_from_model)
            self.finetune_report = checkpoint_state.load_finetune(
                state, ckpt_cfg.finetune_from_model, self.model, self.vocab
            )
            if self.ema is not None:
                self.ema = EMA(self.model, self.cfg.optimization.ema_decay)
            print(self.finetune_report, flush=True)
        return {}

    def make_logger(self) -> TrainLogger:
        cfg = self.cfg
        jsonl = cfg.common.log_file
        if jsonl is None and not cfg.checkpoint.no_save:
            jsonl = os.path.join(cfg.checkpoint.save_dir, "train_log.jsonl")
        reducers = {name: reducer(criterion) for name, criterion in self.criteria.items()}
        return TrainLogger(cfg.common, [t.name for t in self.tasks], list(self.batches.probabilities), reducers,
                           cfg.optimization.max_update, jsonl, start_update=self.num_updates)

    def describe_run(self) -> None:
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        self.logger.info(f"model: arch {self.model.cfg.arch}, {total:,} parameters ({trainable:,} trained), "
                         f"adaptors {list(self.model.adaptor_names)}, device {self.device}")
        for task, share in zip(self.tasks, self.batches.probabilities):
            splits = ", ".join(f"{split} {len(rows)}" for split, rows in task.datasets.items())
            self.logger.info(f"task {task.name}: {splits} rows; batch {task.batch_size or self.cfg.dataset.batch_size}"
                             f"; weight {task.weight}; share of batches {share:.2f}")

    # ------------------------------------------------------------------------------- the loop

    def train_loop(self) -> None:
        """Update until max_update / max_epoch / patience; validate and save as configured, and at the end."""
        cfg = self.cfg
        epochs = self.batches.completed_epochs
        while not self.should_stop():
            if not self.train_step(self.batches.micro_batches(self.num_updates)):
                continue
            epoch_ended, epochs = self.batches.completed_epochs > epochs, self.batches.completed_epochs
            validate = self.due(cfg.validation.validate_interval_updates, epoch_ended, cfg.validation.validate_interval)
            save = self.due(cfg.checkpoint.save_interval_updates, epoch_ended, 1)
            self.validate_and_save(validate, save, numbered=save)
        self.validate_and_save(validate=self.done_at.get("validate") != self.num_updates,
                               save=self.done_at.get("save") != self.num_updates, numbered=False)

    def due(self, interval_updates: int, epoch_ended: bool, interval_epochs: int) -> bool:
        """Every interval_updates updates when set, else at the end of every interval_epochs-th epoch."""
        if interval_updates > 0:
            return self.num_updates % interval_updates == 0
        return epoch_ended and self.batches.completed_epochs % interval_epochs == 0

    def should_stop(self) -> bool:
        cfg = self.cfg
        if cfg.optimization.max_update and self.num_updates >= cfg.optimization.max_update:
            return True
        if cfg.optimization.max_epoch and self.batches.completed_epochs >= cfg.optimization.max_epoch:
            return True
        if 0 < cfg.checkpoint.patience <= self.validations_without_improvement:
            self.logger.info(f"early stop: no improvement of {cfg.checkpoint.best_checkpoint_metric} in "
                             f"{self.validations_without_improvement} validations (patience {cfg.checkpoint.patience})")
            return True
        return False

    def autocast(self):
        common = self.cfg.common
        if not (common.bf16 or common.fp16):
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if common.bf16 else torch.float16)

    def train_step(self, micro_batches: list[list[dict]]) -> bool:
        """One update over update_freq micro-batches; returns False when skipped for a non-finite loss.

        Losses are summed and the gradients divided by the update's total sample size (fairseq), so
        update_freq=2 with batches of 4 equals one batch of 8.
        """
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        sample_size, logs = 0, []
        for samples in micro_batches:
            for sample in samples:
                sample = move_to(sample, self.device)
                with self.autocast():
                    loss, size, log = self.criteria[sample["task"]](self.model, sample)
                if not math.isfinite(float(log.get("loss", loss.detach()))):
                    return self.skip_update(f"a non-finite loss in task {sample['task']!r}, rows {row_ids(sample)}")
                (self.scaler.scale(loss) if self.scaler else loss).backward()
                sample_size += size
                logs.append((sample["task"], log))
        lr = self.lr_scheduler.step_update(self.optimizer, self.num_updates)
        gnorm = self.normalise_and_clip(sample_size)
        if not math.isfinite(gnorm) and self.scaler is None:
            batches = "; ".join(f"task {task!r} rows {rows}" for task, rows in self.update_rows(micro_batches))
            return self.skip_update(f"a non-finite gradient norm ({batches})")
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skips the step itself on fp16 overflow
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.num_updates += 1
        self.bad_steps = 0
        for task, log in logs:
            self.logger.add_batch(task, log)
        clip = self.cfg.optimization.clip_norm
        self.logger.add_update(self.num_updates, gnorm, 0 < clip < gnorm, lr, self.batches.completed_epochs + 1)
        return True

    def normalise_and_clip(self, sample_size: int) -> float:
        """Divide the summed gradients by the sample size, clip to clip_norm; returns the norm before clipping."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        grads = [p.grad for p in params]
        if grads:
            torch._foreach_div_(grads, max(sample_size, 1))
        clip = self.cfg.optimization.clip_norm
        return float(torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf))

    def skip_update(self, what: str) -> bool:
        """Drop this update's gradients after a non-finite loss or gradient; stop after too many in a row."""
        self.optimizer.zero_grad(set_to_none=True)
        self.bad_steps += 1
        self.logger.info(f"update {self.num_updates + 1} skipped: {what} ({self.bad_steps} in a row)")
        if self.bad_steps >= MAX_CONSECUTIVE_BAD_STEPS:
            raise FloatingPointError(
                f"{self.bad_steps} updates in a row were skipped, the last for {what}; lower the learning rate, "
                f"check those rows, or train in fp32 instead of fp16"
            )
        return False

    @staticmethod
    def update_rows(micro_batches: list[list[dict]]) -> list[tuple[str, list]]:
        return [(sample["task"], row_ids(sample)) for samples in micro_batches for sample in samples]

    # ------------------------------------------------------------------------- validation

    @torch.no_grad()
    def validate(self) -> dict[str, dict[str, float]]:
        """Loss of every task with a valid split: {task: {"loss", "nll_loss", "ppl", "accuracy", ...}}.

        With EMA the averaged weights are scored. Generation-based metrics (task.metric) hook in here.
        """
        results, was_training = {}, self.model.training
        self.model.eval()
        with self.ema.apply_to(self.model) if self.ema is not None else nullcontext():
            for task in self.tasks:
                if "valid" in task.datasets:
                    logs = [log for _, _, log in self.valid_losses(task)]
                    results[task.name] = reducer(self.criteria[task.name])(logs)
        self.model.train(was_training)
        return results

    def valid_losses(self, task: Task):
        for sample in valid_loader(task, self.encoders[task.name], self.cfg):
            sample = move_to({**sample, "task": task.name, "task_weight": 1.0}, self.device)
            with self.autocast():
                yield self.criteria[task.name](self.model, sample)

    def score(self, results: dict[str, dict[str, float]]) -> float:
        """The best_checkpoint_metric: "TASK.METRIC", or a metric name averaged over the tasks (default loss)."""
        name = self.cfg.checkpoint.best_checkpoint_metric
        task, dot, metric = name.rpartition(".")
        if dot:
            if metric not in results.get(task, {}):
                raise ValueError(f"best_checkpoint_metric {name!r}: validation gave {self.metric_names(results)}")
            return results[task][metric]
        values = [stats[name] for stats in results.values() if name in stats]
        if not values:
            raise ValueError(f"best_checkpoint_metric {name!r}: validation gave {self.metric_names(results)}")
        return sum(values) / len(values)

    @staticmethod
    def metric_names(results: dict) -> list[str]:
        return [f"{task}.{metric}" for task, stats in results.items() for metric in stats]

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.cfg.checkpoint.maximize_best_checkpoint_metric else value < self.best

    # ------------------------------------------------------------------------- checkpoints

    def validate_and_save(self, validate: bool, save: bool, numbered: bool) -> None:
        is_best = False
        cfg = self.cfg
        if validate and not cfg.validation.disable_validation and any("valid" in t.datasets for t in self.tasks):
            results = self.validate()
            value = self.score(results)
            is_best = self.improved(value)
            if is_best:
                self.best, self.validations_without_improvement = value, 0
            else:
                self.validations_without_improvement += 1
            self.logger.write_valid(self.num_updates, self.batches.completed_epochs + 1, results, self.best)
            self.done_at["validate"] = self.num_updates
        if cfg.checkpoint.no_save or not (save or is_best):
            return
        if save:
            self.done_at["save"] = self.num_updates
        names = (["checkpoint_last.pt"] if save else []) + (["checkpoint_best.pt"] if is_best else [])
        if numbered:
            names.append(f"checkpoint_{self.num_updates}.pt")
        checkpoint_state.write_checkpoints(self.checkpoint(), cfg.checkpoint.save_dir, names)
        if numbered:
            checkpoint_state.prune_numbered(cfg.checkpoint.save_dir, cfg.checkpoint.keep_last_n)

    def checkpoint(self) -> dict:
        """The full training state (DESIGN §8 keys); see engine/state.py."""
        config = {"train": config_to_dict(self.cfg), **checkpoint_state.model_description(self.model, self.data_cfg)}
        train_meta = {
            "num_updates": self.num_updates,
            "epoch": self.batches.completed_epochs + 1,
            "best": self.best,
            "best_checkpoint_metric": self.cfg.checkpoint.best_checkpoint_metric,
            "validations_without_improvement": self.validations_without_improvement,
            "best_weights": "ema" if self.ema is not None else "model",
            "meters": self.logger.state_dict(),
        }
        if self.scaler is not None:
            train_meta["grad_scaler"] = self.scaler.state_dict()
        return checkpoint_state.build_state(
            model=self.model, ema=self.ema, optimizer=self.optimizer, lr_scheduler=self.lr_scheduler,
            sampler={"num_updates": self.num_updates, "tasks": self.batches.state_dict()}, vocab=self.vocab,
            config=config, tasks=self.tasks, user_dirs=imported_user_dirs(), train_meta=train_meta,
        )
