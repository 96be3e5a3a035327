"""The training configuration: one dataclass per section of `TrainConfig`, with help text per option.

Every leaf option name is unique across sections, so it doubles as a flat key (`lr=3e-4`) and as a
fairseq-style flag (`--lr 3e-4`); config.py turns these dataclasses into flags, YAML and docs. The
`model`, `generation`, `vocab` and `tasks` sections are the dataclasses their owners declare
(ModelConfig, GenerationConfig, VocabConfig, TaskConfig); the others are training's own.
"""
from __future__ import annotations

import dataclasses
from typing import Literal, Optional

from ..criteria.box_attention import REGIONS as BOX_ATTENTION_REGIONS
from ..criteria.frame_regression import FrameRegressionConfig
from ..criteria.label_smoothed_ce import LabelSmoothedCEConfig
from ..data.sampler import parse_sampling
from ..devices import check_device_name
from ..generators.config import GenerationConfig
from ..models.config import ModelConfig
from ..options import at_least, fraction, one_of, option, positive, section
from ..rng import check_seed
from ..tasks.config import TaskConfig
from ..vocab import VocabConfig


@dataclasses.dataclass
class CommonConfig:
    """Seed, device, precision, logging and plugins."""

    seed: int = option(1, "random seed; data randomness is a pure function of (seed, task, epoch, row)",
                       check=check_seed)
    device: str = option("auto", "auto (CUDA when available), cpu, cuda, cuda:N or mps", check=check_device_name)
    threads: Optional[int] = option(
        None, "intra-op threads of the training process (None: at most torch's count, which follows OMP_NUM_THREADS, "
              "and at most the cores other processes leave free, measured again every 10 s)", check=at_least(1))
    bf16: bool = option(False, "autocast to bfloat16 (CPU and GPU)")
    fp16: bool = option(False, "autocast to float16 with a gradient scaler (GPU only)")
    log_interval: int = option(10, "log training statistics every N updates", check=at_least(1))
    log_format: Optional[Literal["tqdm", "simple", "json"]] = option(
        None, "log format; None: tqdm on a terminal, simple otherwise"
    )
    log_file: Optional[str] = option(None, "also write the log to this file")
    tensorboard_logdir: Optional[str] = option(None, "write TensorBoard scalars under this folder")
    user_dir: list[str] = option([], "plugin package folder to import (repeatable)")
    print_config: bool = option(False, "print the resolved config as YAML and exit", transient=True)

    def __post_init__(self):
        if self.bf16 and self.fp16:
            raise ValueError("bf16 and fp16 cannot both be on; pick one")


@dataclasses.dataclass
class DatasetConfig:
    """Batching, loading and length limits."""

    batch_size: int = option(16, "rows per batch per rank (a task's batch_size overrides it)", check=at_least(1))
    max_tokens: Optional[int] = option(None, "token budget per batch, with length bucketing", check=at_least(1))
    num_workers: int = option(0, "DataLoader worker processes per rank", check=at_least(0))
    required_batch_size_multiple: int = option(1, "round batch sizes to a multiple of N", check=at_least(1))
    truncate_long: bool = option(False, "truncate groups longer than the model's max positions instead of failing")
    skip_bad_rows: bool = option(False, "leave rows that fail to load or preprocess out of their batch (each reported "
                                        "once and counted in the run's summary)")


@dataclasses.dataclass
class OptimizationConfig:
    """Optimizer, learning-rate schedule, task mix and training-time model switches."""

    max_update: int = option(1000, "stop after N updates (0: no limit)", check=at_least(0))
    max_epoch: int = option(0, "stop after N epochs over the training data (0: no limit)", check=at_least(0))
    lr: float = option(
        1e-3, "peak learning rate (a one-element list is accepted)", fairseq_list=True, check=at_least(0)
    )
    update_freq: int = option(
        1, "accumulate gradients over N micro-batches per update", fairseq_list=True, check=at_least(1)
    )
    clip_norm: float = option(1.0, "clip gradients to this global norm (0: no clipping)", check=at_least(0))
    optimizer: str = option("adamw", "optimizer name: adamw or muon (docs/training.md); plugins add more")
    adam_betas: tuple[float, float] = option((0.9, 0.999), 'Adam betas, a pair or a string like "(0.9, 0.98)"')
    adam_eps: float = option(1e-8, "Adam epsilon", check=at_least(0))
    weight_decay: float = option(0.01, "decoupled weight decay", check=at_least(0))
    lr_scheduler: str = option(
        "polynomial_decay", "schedule: polynomial_decay, cosine, inverse_sqrt, fixed (plugins add more)"
    )
    warmup_updates: int = option(0, "linear warmup over N updates", check=at_least(0))
    warmup_ratio: float = option(0.0, "warmup as a fraction of max_update (or warmup_updates)", check=fraction)
    warmup_init_lr: float = option(0.0, "learning rate at update 0 of the linear warmup", check=at_least(0))
    end_learning_rate: float = option(0.0, "final learning rate of polynomial_decay and cosine", check=at_least(0))
    power: float = option(1.0, "exponent of polynomial_decay")
    sampling: str = option(
        "proportional",
        "task mix per batch: proportional, round_robin, all, temperature=T, weights=TASK:W,TASK:W",
        check=parse_sampling,
    )
    ema_decay: Optional[float] = option(None, "keep an exponential moving average of the weights", check=fraction)
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy", check=fraction)
    task_weighting: str = option("fixed", "fixed: each task's loss weight is its Task weight; loss_scale: that "
                                          "weight times the mean of every task's running loss per token over the "
                                          "task's own, so that every task's gradients have one loss scale",
                                 check=one_of("fixed", "loss_scale"))
    sentence_avg: bool = option(False, "divide each update's gradient by its rows instead of its target tokens "
                                       "(fairseq's --sentence-avg): a task's weight then grows with its target length")
    condition_dropout: float = option(0.1, "outputs generated with classifier-free guidance (IMAGE, MOTION): share "
                                           "of training rows whose prompt is replaced by the empty one, so that the "
                                           "model learns the unconditional prediction too", check=fraction)
    max_snr: Optional[float] = option(None, "outputs generated by diffusion: cap of the SNR in the loss weight "
                                            "(min-SNR); None: OFASys's sqrt(SNR + 1)", check=positive)
    guided_attention: float = option(FrameRegressionConfig.guided_attention, "speech outputs (frame_regression): weight of the guided-attention loss "
                                          "that keeps the decoder's cross-attention near the text's diagonal "
                                          "(DC-TTS); 0: off", check=at_least(0))
    box_attention: float = option(LabelSmoothedCEConfig.box_attention,
                                  "tasks with a BOX target (label_smoothed_ce): weight of the penalty on the "
                                  "decoder's cross-attention to image cells outside the box while it writes the "
                                  "box's <bin>s; 0: off", check=at_least(0))
    box_attention_region: str = option(LabelSmoothedCEConfig.box_attention_region,
                                       "the cells box_attention guides the step writing a box coordinate to: box "
                                       "(the whole box), edge (the edge of the box the coordinate names, a strip one "
                                       "cell wide) or box_and_edge (the mean of the two)",
                                       check=one_of(*BOX_ATTENTION_REGIONS))
    box_distance: float = option(LabelSmoothedCEConfig.box_distance,
                                 "tasks with a BOX target (label_smoothed_ce): weight of the expected distance, "
                                 "under the model's distribution over the <bin>s, between a bin's coordinate and "
                                 "the target's (in image sides), added per <bin> token; 0: off", check=at_least(0))
    freeze_encoder: bool = option(False, "do not train the encoder")
    freeze_image_backbone: bool = option(False, "do not train the image adaptor's backbone")

    def __post_init__(self):
        if self.warmup_updates > 0 and self.warmup_ratio > 0:
            raise ValueError("set warmup_updates or warmup_ratio, not both")


@dataclasses.dataclass
class CheckpointConfig:
    """Where checkpoints go, what to resume from and what to reset."""

    save_dir: str = option("checkpoints", "folder of checkpoint_last.pt and checkpoint_best.pt (shared by all nodes)")
    restore_file: str = option("checkpoint_last.pt", "resume from this checkpoint; a bare file name is in save_dir")
    finetune_from_model: Optional[str] = option(None, "start from these weights (non-strict), fresh training state")
    reset_optimizer: bool = option(False, "do not restore the optimizer state")
    reset_lr_scheduler: bool = option(False, "do not restore the learning-rate scheduler state")
    reset_dataloader: bool = option(False, "do not restore the data sampler position")
    reset_meters: bool = option(False, "do not restore the logging meters")
    save_interval_updates: int = option(0, "also save every N updates (0: at epoch ends only)", check=at_least(0))
    keep_last_n: int = option(
        2, "keep the newest N numbered checkpoints checkpoint_<update>.pt (-1: all)",
        aliases=("keep_interval_updates", "keep_last_epochs"), check=at_least(-1)
    )
    no_epoch_checkpoints: bool = option(False, "at epoch ends write checkpoint_last.pt only, no numbered checkpoint")
    no_save: bool = option(False, "never write checkpoints")
    best_checkpoint_metric: str = option("loss", 'what picks checkpoint_best: "loss" or "TASK.METRIC"')
    maximize_best_checkpoint_metric: Optional[bool] = option(
        None, "higher best_checkpoint_metric is better (None: the metric's own direction; loss, nll_loss and ppl are "
              "minimised, token_accuracy and generation metrics such as accuracy, bleu, cider maximised)")
    patience: int = option(-1, "stop after N validations without improvement (-1: never)", check=at_least(-1))


@dataclasses.dataclass
class ValidationConfig:
    """When and how much to validate."""

    validate_interval_updates: int = option(0, "validate every N updates (0: at epoch ends)", check=at_least(0))
    validate_interval: int = option(1, "validate every N epochs", check=at_least(1))
    disable_validation: bool = option(False, "never validate")
    max_valid_samples: Optional[int] = option(None, "validate on at most N rows per task", check=at_least(1))


@dataclasses.dataclass
class DistributedConfig:
    """Multi-GPU / multi-node settings (ranks come from torchrun's environment)."""

    ddp_backend: Literal["c10d", "fully_sharded", "no_c10d"] = option(
        "c10d", "data-parallel wrapper: c10d (DDP), fully_sharded (FSDP2), no_c10d (none)"
    )
    distributed_timeout: int = option(1800, "seconds before a collective operation times out", check=at_least(1))
    find_unused_parameters: Optional[bool] = option(
        None, "DDP find_unused_parameters (None: on when tasks leave adaptors unused)"
    )


@dataclasses.dataclass
class TrainConfig:
    """Everything `ofasys-train` and `Trainer` read; sections map to YAML mappings."""

    common: CommonConfig = section(CommonConfig, "seed, device, precision, logging, plugins")
    dataset: DatasetConfig = section(DatasetConfig, "batching and data loading")
    optimization: OptimizationConfig = section(OptimizationConfig, "optimizer, schedule, task mix")
    checkpoint: CheckpointConfig = section(CheckpointConfig, "saving and resuming")
    model: ModelConfig = section(ModelConfig, "architecture and regularisation")
    generation: GenerationConfig = section(GenerationConfig, "decoding defaults")
    validation: ValidationConfig = section(ValidationConfig, "validation schedule")
    distributed: DistributedConfig = section(DistributedConfig, "multi-GPU and multi-node")
    vocab: VocabConfig = section(VocabConfig, "vocabulary sizes and tokenizer")
    tasks: list[TaskConfig] = option([], "the tasks to train on (YAML and overrides; Python passes Task objects)")
