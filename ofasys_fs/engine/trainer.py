"""Trainer: the training loop over many tasks, in one process or many (docs/design.md, "Training").

`Trainer(**options).fit(model, tasks)` and `ofasys-train` (also under torchrun) are one code path. The
loop is plain PyTorch: for each update, run update_freq micro-batches (one task each, as the schedule
says, the same on every rank), sum their losses, normalise the gradients by the update's sample size
summed over the ranks, clip, set the learning rate, step, update the EMA; validate and save at the
configured intervals (only global rank 0 writes files). engine/distributed.py holds what differs
between one process, DDP and FSDP2.
"""
from __future__ import annotations

import dataclasses
import math
import os
from contextlib import nullcontext
from typing import Any, Optional, Sequence

import torch
from torch import nn

from ..config import load_config
from ..data.audio_statistics import with_audio_statistics
from ..data.dataset import TaskDataset
from ..data.encode import RowEncoder
from ..data.motion_statistics import with_motion_statistics
from ..devices import move_to, resolve_device
from ..errors import ConfigError, DataError, TrainingError
from ..guidance import with_condition_dropout
from ..inference.decoding import generated_with_guidance
from ..models.cpu_linear import kernel_choice
from ..models.generalist import GeneralistModel
from ..models.task_batch_norm import add_task_statistics, rows_not_counted
from ..preprocess.config import DataConfig
from ..preprocess.image_code import resolve_image_tokenizers
from ..registry import CRITERION_REGISTRY, LR_SCHEDULER_REGISTRY, OPTIMIZER_REGISTRY, import_user_dir
from ..tasks.base import Task
from ..tasks.config import tasks_from_config
from ..vocab import VocabConfig
from . import state as checkpoint_state
from .batches import train_batches
from .config import TrainConfig
from .distributed import (
    Distributed,
    check_backend,
    is_communication_failure,
    make_strategy,
    merge_rank_outputs,
    rank_failure,
    rank_seed,
    world_from_env,
)
from .ema import EMA
from .logging import TrainLogger
from .task_balance import LossScaleWeights
from .threads import TrainingThreads
from .validation import TrainerValidation

MAX_CONSECUTIVE_BAD_STEPS = 5  # non-finite losses in a row before training stops
MIN_LOSS_SCALE = 1e-4  # fp16: fairseq's --min-loss-scale default


def row_ids(sample: dict) -> list:
    """The row indices of a batch, for messages."""
    return sample["id"].tolist() if "id" in sample else []


class Trainer(checkpoint_state.TrainerCheckpoints, TrainerValidation):
    """Trains one GeneralistModel on many tasks; `Trainer(max_update=..., lr=..., ...)` takes any flat
    option of TrainConfig (docs/config.md), or a resolved `config`."""

    def __init__(self, config: Optional[TrainConfig] = None, **options: Any):
        if config is not None and options:
            raise TypeError("Trainer: pass a TrainConfig or keyword options, not both")
        self.cfg: TrainConfig = config if config is not None else load_config(TrainConfig, **options)
        self.model: Optional[GeneralistModel] = None
        self.dist: Optional[Distributed] = None
        self.batches = self.logger = self.threads = None
        self.num_updates = 0
        self.finetune_report = None
        self.metric_directions: dict[str, bool] = {}  # validation metric -> higher is better

    # ----------------------------------------------------------------------------------- set-up

    def fit(self, model: Optional[GeneralistModel] = None, tasks: Optional[Sequence[Task]] = None) -> GeneralistModel:
        """Train `model` (built from the `model` config section when None) on `tasks` (from the config's
        `tasks` list when None); writes checkpoints to save_dir and returns the trained model."""
        try:
            self.setup(model, tasks)
            self.train_loop()
            self.dist.barrier()  # rank 0 may still be writing the last checkpoint
        except RuntimeError as err:
            world = world_from_env()
            if world.world_size == 1 or not is_communication_failure(err):
                raise
            raise rank_failure(err, world, self.cfg.distributed.distributed_timeout) from err
        finally:
            self.close()
        return self.model

    def close(self) -> None:
        """End the data loaders, the logs and the process group this trainer created."""
        for part in (self.batches, self.logger, self.dist, self.threads):
            if part is not None:
                part.close()

    def setup(self, model: Optional[GeneralistModel], tasks: Optional[Sequence[Task]]) -> None:
        cfg = self.cfg
        for path in cfg.common.user_dir:
            import_user_dir(path)
        torch.manual_seed(cfg.common.seed)
        self.device = resolve_device(cfg.common.device)
        self.threads = TrainingThreads(cfg.common.threads)
        if cfg.common.fp16 and self.device.type != "cuda":
            raise ConfigError(f"fp16 needs a CUDA device (device is {self.device}); use --bf16 on CPU")
        check_backend(cfg.distributed.ddp_backend, cfg.common.fp16, cfg.optimization.ema_decay)
        sharded = cfg.distributed.ddp_backend == "fully_sharded"
        self.dist = Distributed.start(self.device, cfg.distributed.distributed_timeout, needs_group=sharded)
        self.device, world = self.dist.device, self.dist.world
        if not cfg.checkpoint.no_save:
            if os.path.exists(cfg.checkpoint.save_dir) and not os.path.isdir(cfg.checkpoint.save_dir):
                raise ConfigError(f"save_dir {cfg.checkpoint.save_dir} is a file; expected a folder for the checkpoints")
            self.dist.check_shared_dir(cfg.checkpoint.save_dir)
            if world.is_main and (stale := checkpoint_state.remove_stale_temp_files(cfg.checkpoint.save_dir)):
                self.say(f"removed unfinished checkpoint writes of an interrupted run: {stale}")
        self.tasks = self.check_tasks(tasks)
        self.image_tokenizers = resolve_image_tokenizers(
            (model.cfg.image_tokenizer if model is not None else None) or cfg.model.image_tokenizer,
            [template for task in self.tasks for template in task.templates])
        self.cfg = dataclasses.replace(cfg, vocab=self.vocab_config())
        self.vocab = self.finetune_vocabulary()
        cfg = self.cfg  # the model and vocab sections may now be the fine-tuned checkpoint's
        # the initial weights depend on the seed alone: loading a file for the first time in this process (an
        # image tokenizer builds its modules before reading its weights) must not shift them
        torch.manual_seed(cfg.common.seed)
        self.model = self.prepare_model(model)
        torch.manual_seed(rank_seed(cfg.common.seed, world.rank))  # each rank its own dropout stream
        data_cfg = with_audio_statistics(DataConfig.for_model(self.model.cfg, cfg.dataset.truncate_long, {
            name: tokenizer.content_hash for name, tokenizer in self.image_tokenizers.items()}), self.tasks)
        self.data_cfg = with_motion_statistics(data_cfg, self.tasks)
        self.encoders = {task.name: RowEncoder.for_task(task, self.vocab, self.data_cfg) for task in self.tasks}
        self.check_first_rows()
        self.criteria = {task.name: self.build_criterion(task) for task in self.tasks}
        self.condition_dropout = {task.name: cfg.optimization.condition_dropout for task in self.tasks
                                  if generated_with_guidance(self.encoders[task.name], task.generation)}
        resumed = self.load_initial_weights()
        add_task_statistics(self.model, [task.name for task in self.tasks])  # a fine-tuned model's new tasks
        self.strategy = make_strategy(self.dist, cfg.distributed.ddp_backend, self.find_unused_parameters())
        self.train_model = self.strategy.wrap(self.model)
        opt = cfg.optimization
        self.optimizer = OPTIMIZER_REGISTRY.build_with(opt.optimizer, {
            "lr": opt.lr, "betas": opt.adam_betas, "eps": opt.adam_eps, "weight_decay": opt.weight_decay,
        }).build(self.model)
        self.lr_scheduler = self.build_lr_scheduler()
        self.ema = EMA(self.model, opt.ema_decay) if opt.ema_decay else None
        self.scaler = torch.amp.GradScaler("cuda") if cfg.common.fp16 else None
        meta = self.restore_training(resumed)
        self.num_updates = int(meta.get("num_updates", 0))
        self.done_at = {"validate": self.num_updates, "save": self.num_updates} if meta else {}
        same_metric = meta.get("best_checkpoint_metric") == cfg.checkpoint.best_checkpoint_metric
        self.best = meta.get("best") if same_metric else None
        self.validations_without_improvement = int(meta.get("validations_without_improvement", 0))
        self.task_balance = (LossScaleWeights(meta.get("task_loss_scale")) if opt.task_weighting == "loss_scale"
                             else None)
        self.bad_steps = 0
        self.bad_rows: set[str] = set()
        self.written: set[str] = set()
        sampler = meta.get("sampler")
        self.batches = train_batches(self.tasks, self.encoders, cfg, sampler["tasks"] if sampler else None,
                                     world.rank, world.world_size)
        self.logger = self.make_logger()
        if "meters" in meta:
            self.logger.load_state_dict(meta["meters"])
        if self.scaler is not None and "grad_scaler" in meta:
            self.scaler.load_state_dict(meta["grad_scaler"])
        if "rng" in meta and not checkpoint_state.set_rng_state(meta["rng"], world.rank, world.world_size):
            torch.manual_seed(rank_seed(cfg.common.seed, world.rank, self.num_updates))
            self.say("the checkpoint was written by another number of ranks: dropout streams are reseeded")
        self.describe_run()

    def say(self, text: str) -> None:
        """A line for the user from rank 0 (before the logger exists)."""
        if self.dist.world.is_main:
            print(text, flush=True)

    def find_unused_parameters(self) -> bool:
        """DDP's search for parameters without gradient (docs/distributed.md: measured cost), on when a task
        does not feed every adaptor of the model, a CTC head exists, or a task has a non-text output (an output
        adaptor feeds the decoder instead of its token embeddings; image_code's encoder-side weights get no
        gradient), unless the config decides."""
        chosen = self.cfg.distributed.find_unused_parameters
        if chosen is not None:
            return chosen
        every = set(self.model.adaptor_names)
        fed = [self.model.adaptors_for(task.templates) for task in self.tasks]
        outputs = any(template.output_modality != "TEXT" for task in self.tasks for template in task.templates)
        return any(names != every for names in fed) or "ctc_head" in self.model._modules or outputs

    def check_tasks(self, tasks: Optional[Sequence[Task]]) -> list[Task]:
        if tasks is None and self.cfg.tasks:
            tasks = tasks_from_config(self.cfg.tasks)
        if isinstance(tasks, Task) or not isinstance(tasks, (list, tuple, type(None))):
            raise TypeError(f"Trainer.fit(tasks=...) expects a list of Task objects, got {type(tasks).__name__}; "
                            f"write tasks=[task]")
        if not tasks:
            raise ConfigError("Trainer.fit needs tasks: fit(tasks=[Task(...), ...]) or a `tasks` list in the config")
        strangers = [f"tasks[{i}] is {type(task).__name__} {task!r:.40}" for i, task in enumerate(tasks)
                     if not isinstance(task, Task)]
        if strangers:
            raise TypeError(f"Trainer.fit: {strangers[0]}; expected a Task (Task(instruction=...) or a built-in "
                            f"task class)")
        names = [task.name for task in tasks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"task names must be unique (they key logs and checkpoints); repeated: {duplicates}")
        for task in tasks:
            if "train" not in task.datasets or len(task.datasets["train"]) == 0:
                raise ConfigError(f"task {task.name!r} has no training rows: call task.add_dataset(rows, 'train')")
        return list(tasks)

    def vocab_config(self) -> VocabConfig:
        """The vocab section, with as many code ids as the image tokenizers have codes unless num_codes is set."""
        vocab_cfg, needed = self.cfg.vocab, max((t.num_codes for t in self.image_tokenizers.values()), default=0)
        if vocab_cfg.num_codes is None and needed:
            return dataclasses.replace(vocab_cfg, num_codes=needed)
        if vocab_cfg.num_codes is not None and vocab_cfg.num_codes < needed:
            raise ConfigError(f"num_codes={vocab_cfg.num_codes} (vocab config) is smaller than the {needed} codes of "
                              f"the image tokenizer; leave num_codes unset to take the tokenizer's")
        return vocab_cfg

    def code_grid(self) -> Optional[tuple[int, int]]:
        """The one code grid of the image tokenizers (the image_code adaptor's positions), or None without any."""
        grids = {tuple(tokenizer.grid) for tokenizer in self.image_tokenizers.values()}
        if len(grids) > 1:
            raise ConfigError(f"the image tokenizers of one model must share their code grid; the tasks' tokenizers "
                              f"{sorted(self.image_tokenizers)} have grids {sorted(grids)}")
        return grids.pop() if grids else None

    def prepare_model(self, model: Optional[GeneralistModel]) -> GeneralistModel:
        """Build the model for this vocabulary and the tasks' adaptors, move it, apply the model switches."""
        cfg = self.cfg
        if model is None:
            model = GeneralistModel(dataclasses.replace(cfg.model))
        needed = model.adaptors_for(template for task in self.tasks for template in task.templates)
        grid = self.code_grid()
        if grid is not None and model.cfg.image_code_grid not in (None, grid):
            raise ConfigError(f"the model's image_code_grid {model.cfg.image_code_grid} differs from the image "
                              f"tokenizer's grid {grid}")
        if not model.is_built:
            model.cfg.image_code_grid = model.cfg.image_code_grid or grid
            model.build_for_tasks(self.vocab, self.tasks)
        elif model.vocab_size != len(self.vocab) or not needed <= set(model.adaptor_names):
            raise ConfigError(
                f"the model passed to fit was built for {model.vocab_size} tokens and adaptors "
                f"{sorted(model.adaptor_names)}; the vocabulary has {len(self.vocab)} and the tasks need "
                f"{sorted(needed)}. Pass an unbuilt GeneralistModel(...) and fit builds it"
            )
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
                raise ConfigError(
                    f"--freeze-image-backbone: none of the model's adaptors {sorted(model.adaptor_names)} has a "
                    f"backbone (image_patch has none; image_resnet has one)"
                )
            for module in with_backbone:
                module.freeze_backbone()

    def check_first_rows(self) -> None:
        """Encode each task's first training row now: a column name or form that fits no row (a typo in the
        instruction, another file) is an error before the model is built, not some updates later."""
        if self.cfg.dataset.skip_bad_rows:
            return
        for task in self.tasks:
            TaskDataset(task, "train", self.encoders[task.name], self.cfg.common.seed)[0]

    def build_criterion(self, task: Task) -> nn.Module:
        opt = self.cfg.optimization
        options = {"label_smoothing": opt.label_smoothing, "max_snr": opt.max_snr, "sentence_avg": opt.sentence_avg,
                   "guided_attention": opt.guided_attention, "box_attention": opt.box_attention,
                   "box_attention_region": opt.box_attention_region, "box_distance": opt.box_distance}
        return CRITERION_REGISTRY.build_with(task.criterion, options).to(self.device)

    def build_lr_scheduler(self) -> Any:
        opt = self.cfg.optimization
        if "total_num_update" in LR_SCHEDULER_REGISTRY.config_fields(opt.lr_scheduler) and not opt.max_update:
            raise ConfigError(f"lr_scheduler {opt.lr_scheduler} decays until max_update; set max_update > 0 "
                             f"or use lr_scheduler=inverse_sqrt or fixed")
        return LR_SCHEDULER_REGISTRY.build_with(opt.lr_scheduler, {
            "lr": opt.lr, "warmup_updates": opt.warmup_updates, "warmup_ratio": opt.warmup_ratio,
            "warmup_init_lr": opt.warmup_init_lr, "total_num_update": opt.max_update or None,
            "end_learning_rate": opt.end_learning_rate, "power": opt.power,
        })

    def make_logger(self) -> TrainLogger:
        cfg = self.cfg
        jsonl = cfg.common.log_file
        if jsonl is None and not cfg.checkpoint.no_save:
            jsonl = os.path.join(cfg.checkpoint.save_dir, "train_log.jsonl")
        reducers = {name: type(criterion).reduce_metrics for name, criterion in self.criteria.items()}
        return TrainLogger(cfg.common, [t.name for t in self.tasks], list(self.batches.probabilities), reducers,
                           cfg.optimization.max_update, jsonl, start_update=self.num_updates,
                           quiet=not self.dist.world.is_main)

    def describe_run(self) -> None:
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        self.logger.info(f"model: arch {self.model.cfg.arch}, {total:,} parameters ({trainable:,} trained), "
                         f"adaptors {list(self.model.adaptor_names)}, device {self.device}, {self.threads.describe()}; "
                         f"{self.strategy.describe()}")
        if self.device.type == "cpu":
            self.logger.info(f"linear layers: {kernel_choice()}")
        for task, share in zip(self.tasks, self.batches.probabilities):
            splits = ", ".join(f"{split} {len(rows)}" for split, rows in task.datasets.items())
            self.logger.info(f"task {task.name}: {splits} rows; batch {task.batch_size or self.cfg.dataset.batch_size}"
                             f"; weight {task.weight}; share of batches {share:.2f}")
        if not self.validates() and not self.cfg.checkpoint.no_save:
            self.logger.info("no validation (no task has a valid split, or disable_validation): checkpoint_best.pt "
                             "will be the last checkpoint")

    # ------------------------------------------------------------------------------- the loop

    def train_loop(self) -> None:
        """Update until max_update / max_epoch / patience; validate and save as configured, and at the end; then
        one summary line. A data error saves checkpoint_last.pt first (one process), so the run can resume."""
        cfg = self.cfg
        if self.num_updates and self.should_stop():
            self.logger.info(f"nothing to train: the run in {cfg.checkpoint.save_dir} is already at update "
                             f"{self.num_updates} (max_update {cfg.optimization.max_update}, max_epoch "
                             f"{cfg.optimization.max_epoch}); raise them to train on")
        epochs = self.batches.completed_epochs
        try:
            while not self.should_stop():
                if not self.train_step(self.batches.micro_batches(self.num_updates)):
                    continue
                if changed := self.threads.adjust():
                    self.logger.info(changed)
                epoch_ended, epochs = self.batches.completed_epochs > epochs, self.batches.completed_epochs
                validate = self.due(cfg.validation.validate_interval_updates, epoch_ended,
                                    cfg.validation.validate_interval)
                save = self.due(cfg.checkpoint.save_interval_updates, epoch_ended, 1)
                interval = cfg.checkpoint.save_interval_updates > 0
                self.validate_and_save(validate, save, numbered=save and (interval or not cfg.checkpoint.no_epoch_checkpoints))
        except DataError as err:
            self.save_before_stopping()
            raise DataError(f"{err}. To check every row before training: ofasys-preprocess --input FILE "
                            f"--instruction '...'; to skip bad rows: --skip-bad-rows") from err
        self.validate_and_save(validate=self.done_at.get("validate") != self.num_updates,
                               save=self.done_at.get("save") != self.num_updates, numbered=False)
        self.logger.info(self.summary())

    def save_before_stopping(self) -> None:
        """checkpoint_last.pt of the updates made so far, to resume from once the data is fixed (one process only:
        other ranks are elsewhere in the loop)."""
        cfg = self.cfg.checkpoint
        if cfg.no_save or not self.num_updates or self.dist.world.world_size > 1:
            return
        if self.done_at.get("save") != self.num_updates:
            checkpoint_state.write_checkpoints(self.checkpoint(), cfg.save_dir, ["checkpoint_last.pt"])
        self.logger.info(f"stopped by a data error: checkpoint_last.pt holds update {self.num_updates}")

    def summary(self) -> str:
        """The run's last line: updates, checkpoints written, the best value and where."""
        cfg = self.cfg.checkpoint
        line = f"done: {self.num_updates} updates"
        if self.bad_rows:
            line += f"; {len(self.bad_rows)} bad rows skipped"
        if cfg.no_save:
            return line + "; no checkpoints (no_save)"
        kept = checkpoint_state.kept_checkpoints(cfg.save_dir, self.written)
        line += f"; checkpoints in {cfg.save_dir}: {', '.join(kept) or 'none written by this run'}"
        if self.best is None:
            return line + "; checkpoint_best.pt = the last checkpoint (no task has validation data)"
        return line + f"; best {cfg.best_checkpoint_metric} {self.best:.4g} in checkpoint_best.pt"

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
        """One update over update_freq micro-batches; returns False when skipped (a non-finite loss, an fp16 overflow).

        Losses are summed and the gradients divided by the update's total sample size (fairseq), so
        update_freq=2 with batches of 4 equals one batch of 8.
        """
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        samples = [sample for step in micro_batches for sample in step]
        outputs = []
        for index, sample in enumerate(samples):
            with self.strategy.gradient_sync(index == len(samples) - 1):
                outputs.append(self.forward_backward(move_to(sample, self.device)))
        self.strategy.finish_gradients(self.model)
        sample_size, logs, non_finite = merge_rank_outputs(self.dist.all_gather_object(outputs))
        if non_finite:
            return self.skip_update(f"a non-finite loss in {non_finite}")
        lr = self.lr_scheduler.step_update(self.optimizer, self.num_updates)
        gnorm = self.normalise_and_clip(sample_size)
        if not math.isfinite(gnorm) and self.scaler is None:
            batches = "; ".join(f"task {sample['task']!r} rows {row_ids(sample)}" for sample in samples)
            return self.skip_update(f"a non-finite gradient norm ({batches})")
        if self.scaler is not None:
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)  # skips the step itself on fp16 overflow
            self.scaler.update()
            if self.scaler.get_scale() < scale:
                return self.fp16_overflow(scale)
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.num_updates += 1
        self.bad_steps = 0
        if self.task_balance is not None:
            self.task_balance.update(logs)
        for task, log in logs:
            self.logger.add_batch(task, log)
        clip = self.cfg.optimization.clip_norm
        self.logger.add_update(self.num_updates, gnorm, 0 < clip < gnorm, lr, self.batches.completed_epochs + 1)
        return True

    def forward_backward(self, sample: dict) -> tuple[str, float, Optional[dict], Optional[list]]:
        """One micro-batch on this rank -> (task, sample size, logging output, rows if the loss is non-finite).
        Every rank runs the backward, even of a bad loss (a skipped update is decided on all ranks together);
        a dummy batch (no rows for this rank at an epoch's end) counts for nothing."""
        dummy = sample.pop("dummy", False)
        self.report_bad_rows(sample.pop("bad_rows", []))
        share = self.condition_dropout.get(sample["task"])
        if share:
            sample = with_condition_dropout(sample, share, self.cfg.common.seed, self.num_updates)
        if self.task_balance is not None:
            weight = sample.get("task_weight", 1.0) * self.task_balance.weight(sample["task"])
            sample = {**sample, "task_weight": weight}
        with self.autocast(), rows_not_counted() if dummy else nullcontext():
            loss, size, log = self.criteria[sample["task"]](self.train_model, sample)
        finite = math.isfinite(float(log.get("loss", loss.detach())))
        if dummy:
            loss, size, log = loss * 0.0, 0, None
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        return sample["task"], size, log, None if finite or dummy else row_ids(sample)

    def report_bad_rows(self, reasons: list[str]) -> None:
        """Rows left out of a batch by --skip-bad-rows: each reported and counted once (every epoch skips it)."""
        for reason in reasons:
            if reason not in self.bad_rows:
                self.bad_rows.add(reason)
                self.logger.info(f"skipped a bad row ({len(self.bad_rows)} so far): {reason}")

    def normalise_and_clip(self, sample_size: float) -> float:
        """Divide the gradients summed over all ranks by the total sample size, clip to clip_norm; returns the
        norm before clipping."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        grads = [p.grad for p in params]
        if grads:
            torch._foreach_div_(grads, self.strategy.gradient_divisor(sample_size))
        clip = self.cfg.optimization.clip_norm
        return float(torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf))

    def fp16_overflow(self, scale: float) -> bool:
        """The scaler skipped an update whose fp16 gradients overflowed and lowered the loss scale; as in fairseq,
        that update is not counted (the batch is retried at the lower scale). Stops when the scale collapses."""
        lowered = self.scaler.get_scale()
        self.logger.info(f"update {self.num_updates + 1} skipped: fp16 gradient overflow, loss scale {scale:g} -> "
                         f"{lowered:g}")
        if lowered < MIN_LOSS_SCALE:
            raise TrainingError(
                f"the fp16 loss scale fell to {lowered:g} (below {MIN_LOSS_SCALE:g}): the gradients overflow even "
                f"unscaled; lower the learning rate, or train in bf16 or fp32"
            )
        return False

    def skip_update(self, what: str) -> bool:
        """Drop this update's gradients after a non-finite loss or gradient; stop after too many in a row."""
        self.optimizer.zero_grad(set_to_none=True)
        self.bad_steps += 1
        self.logger.info(f"update {self.num_updates + 1} skipped: {what} ({self.bad_steps} in a row)")
        if self.bad_steps >= MAX_CONSECUTIVE_BAD_STEPS:
            raise TrainingError(
                f"{self.bad_steps} updates in a row were skipped, the last for {what}; lower the learning rate, "
                f"check those rows, or train in fp32 instead of fp16"
            )
        return False

    # ------------------------------------------------------------------------- checkpoints

    def validates(self) -> bool:
        """Whether this run validates at all (some task has valid rows, and validation is on)."""
        return not self.cfg.validation.disable_validation and any("valid" in t.datasets for t in self.tasks)

    def validate_and_save(self, validate: bool, save: bool, numbered: bool) -> None:
        is_best = False
        cfg = self.cfg
        if validate and self.validates():
            # rank 0 holds the generation metrics; every rank must take the same best/patience decisions
            results, self.metric_directions = self.dist.broadcast_object((self.validate(), self.metric_directions))
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
        best_is_last = save and not self.validates()
        names = (["checkpoint_last.pt"] if save else []) + (["checkpoint_best.pt"] if is_best or best_is_last else [])
        if numbered:
            names.append(f"checkpoint_{self.num_updates}.pt")
        state = self.checkpoint()
        if state is not None:
            checkpoint_state.write_checkpoints(state, cfg.checkpoint.save_dir, names)
            self.written.update(names)
        if numbered and self.dist.world.is_main:
            checkpoint_state.prune_numbered(cfg.checkpoint.save_dir, cfg.checkpoint.keep_last_n)
