"""The training configuration: one dataclass per section of `TrainConfig`, with help text per option.

Every leaf option name is unique across sections, so it doubles as a flat key (`lr=3e-4`) and as a
fairseq-style flag (`--lr 3e-4`); config.py turns these dataclasses into flags, YAML and docs.
"""
import dataclasses
import math
import re
from typing import Any, Literal, Optional, Union

from .registry import did_you_mean

SAMPLING_KINDS = ("proportional", "round_robin", "all", "temperature", "weights")


def option(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field with its help text (mutable defaults are copied per instance)."""
    if isinstance(default, (list, dict)):
        factory = lambda: type(default)(default)  # noqa: E731
        return dataclasses.field(default_factory=factory, metadata={"help": help, **metadata})
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def section(cls: type, help: str) -> Any:
    """A nested section field (a dataclass filled with its defaults)."""
    return dataclasses.field(default_factory=cls, metadata={"help": help})


def at_least(minimum: float):
    """Check that a number (when given) is >= minimum."""

    def check(value):
        if value is not None and value < minimum:
            raise ValueError(f"must be >= {minimum}")

    return check


def positive(value: float) -> None:
    """Check that a number is > 0."""
    if not value > 0:
        raise ValueError("must be > 0")


def check_top_p(value: float) -> None:
    """Check a nucleus-sampling mass: -1 (off) or in (0, 1]."""
    if value != -1 and not 0 < value <= 1:
        raise ValueError("must be -1 (off) or in (0, 1]")


def fraction(value) -> None:
    """Check that a probability-like number (when given) lies in [0, 1)."""
    if value is not None and not 0 <= value < 1:
        raise ValueError("must be in [0, 1)")


def check_seed(value: int) -> None:
    """Check a seed that every random generator takes (torch's takes at most 64 bits)."""
    if not 0 <= value < 2**63:
        raise ValueError("must be in [0, 2**63)")


def check_device(value: str) -> None:
    """Check a device name that torch accepts (or "auto")."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise ValueError('expected "auto", "cpu", "cuda", "cuda:N" or "mps"')


def check_constraint_range(value: Optional[str]) -> None:
    """Check fairseq's "START,END" vocabulary range."""
    if value is not None and not re.fullmatch(r"\s*\d+\s*,\s*\d+\s*", value):
        raise ValueError('expected "START,END": two vocabulary ids, e.g. "50265,51265"')


def parse_sampling(spec: str, task_names=None) -> tuple[str, Any]:
    """Parse a task-sampling strategy -> (kind, param); param is None, a temperature, or {task: weight}.

    Forms: "proportional", "round_robin", "all", "temperature=T" (T > 0), "weights=a:1,b:3".
    With `task_names`, the weights must name exactly those tasks.
    """
    text = str(spec).strip()
    kind, has_param, param = text.partition("=")
    kind = kind.strip()
    if kind not in SAMPLING_KINDS:
        raise ValueError(
            f'unknown sampling strategy "{text}".{did_you_mean(kind, SAMPLING_KINDS)} '
            'Expected proportional, round_robin, all, temperature=T or weights=TASK:W,TASK:W'
        )
    if kind in ("proportional", "round_robin", "all"):
        if has_param:
            raise ValueError(f'sampling strategy "{kind}" takes no parameter, got "{text}"')
        return kind, None
    if not param.strip():
        raise ValueError(f'sampling "{text}" needs a parameter, e.g. "temperature=2" or "weights=a:1,b:3"')
    if kind == "temperature":
        try:
            temperature = float(param)
        except ValueError:
            raise ValueError(f'sampling "{text}": the temperature must be a number, e.g. "temperature=2"') from None
        if not temperature > 0:
            raise ValueError(f'sampling "{text}": the temperature must be > 0')
        return kind, temperature
    return kind, _parse_task_weights(text, param, task_names)


def _parse_task_weights(text: str, param: str, task_names) -> dict[str, float]:
    weights: dict[str, float] = {}
    for item in param.split(","):
        name, colon, number = (part.strip() for part in item.partition(":"))
        if not name or not colon:
            raise ValueError(f'sampling "{text}": expected TASK:WEIGHT pairs joined by commas, got "{item.strip()}"')
        if name in weights:
            raise ValueError(f'sampling "{text}": task "{name}" is given twice')
        try:
            weights[name] = float(number)
        except ValueError:
            raise ValueError(f'sampling "{text}": task "{name}" needs a number as weight, got "{number}"') from None
        if not 0 <= weights[name] < math.inf:
            raise ValueError(f'sampling "{text}": the weight of task "{name}" must be >= 0 and finite')
    if not any(weights.values()):
        raise ValueError(f'sampling "{text}": at least one task weight must be > 0')
    if task_names is not None:
        for name in weights:
            if name not in task_names:
                raise ValueError(
                    f'sampling "{text}": no task named "{name}".{did_you_mean(name, task_names)} '
                    f"Tasks: {', '.join(task_names)}"
                )
        missing = [name for name in task_names if name not in weights]
        if missing:
            raise ValueError(f'sampling "{text}": give every task a weight; missing: {", ".join(missing)}')
    return weights


@dataclasses.dataclass
class CommonConfig:
    """Seed, device, precision, logging and plugins."""

    seed: int = option(1, "random seed; data randomness is a pure function of (seed, task, epoch, row)",
                       check=check_seed)
    device: str = option("auto", "auto (CUDA when available), cpu, cuda, cuda:N or mps", check=check_device)
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
    truncate_long: bool = option(False, "truncate groups longer than the max positions instead of failing")
    skip_bad_rows: bool = option(False, "skip rows that fail to load or preprocess (counted in the log)")
    max_source_positions: int = option(1024, "maximum encoder positions per sample", check=at_least(1))
    max_target_positions: int = option(1024, "maximum decoder positions per sample", check=at_least(1))


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
    optimizer: str = option("adamw", "optimizer name (registry; plugins add more)")
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
    checkpoint_activations: bool = option(False, "recompute activations in the backward pass to save memory")
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
        -1, "keep the last N update checkpoints (-1: all)", aliases=("keep_interval_updates",), check=at_least(-1)
    )
    no_save: bool = option(False, "never write checkpoints")
    best_checkpoint_metric: str = option("loss", 'what picks checkpoint_best: "loss" or "TASK.METRIC"')
    maximize_best_checkpoint_metric: bool = option(False, "higher best_checkpoint_metric is better")
    patience: int = option(-1, "stop after N validations without improvement (-1: never)", check=at_least(-1))


@dataclasses.dataclass
class ModelConfig:
    """Architecture preset and regularisation; a None size means "as the arch says"."""

    arch: str = option("tiny", "size preset: micro, tiny, medium, base, large, huge (plugins add more)", short="-a")
    dropout: float = option(0.1, "dropout probability", check=fraction)
    attention_dropout: float = option(0.0, "dropout on attention weights", check=fraction)
    drop_path_rate: float = option(0.0, "stochastic depth rate", check=fraction)
    encoder_layers: Optional[int] = option(None, "encoder layers (default: from the arch)", check=at_least(1))
    decoder_layers: Optional[int] = option(None, "decoder layers (default: from the arch)", check=at_least(1))
    embed_dim: Optional[int] = option(None, "model width (default: from the arch)", check=at_least(1))
    ffn_embed_dim: Optional[int] = option(None, "feed-forward width (default: from the arch)", check=at_least(1))
    attention_heads: Optional[int] = option(None, "attention heads (default: from the arch)", check=at_least(1))
    image_adaptor: Optional[str] = option(None, "image adaptor name (default: from the arch)")
    image_size: Optional[int] = option(None, "image side in pixels (default: from the arch)", check=at_least(1))
    resnet_depth: Optional[int] = option(None, "image_resnet depth: 50, 101 or 152 (default: from the arch)")
    image_backbone_weights: Optional[str] = option(
        None, "torchvision ResNet state_dict (.pth) to initialise image_resnet from; nothing is downloaded"
    )
    video_max_frames: Optional[int] = option(None, "most frames a video piece may have", check=at_least(1))
    audio_max_positions: Optional[int] = option(
        None, "most audio positions after 4x subsampling (750 = 30 s)", check=at_least(1)
    )
    entangle_position_embedding: bool = option(
        False, "add the position vectors to the token/patch embeddings too, not only to the attention biases (OFA)"
    )


@dataclasses.dataclass
class GenerationConfig:
    """Decoding defaults for validation and generation."""

    beam: int = option(5, "beam size", check=at_least(1))
    nbest: int = option(1, "hypotheses returned per row", check=at_least(1))
    max_len_a: float = option(0.0, "maximum length = max_len_a * source length + max_len_b")
    max_len_b: int = option(200, "maximum length = max_len_a * source length + max_len_b", check=at_least(1))
    min_len: int = option(1, "minimum generated length", check=at_least(0))
    lenpen: float = option(1.0, "length penalty: >1 favours longer, <1 shorter outputs")
    unkpen: float = option(0.0, "penalty on <unk> (positive: fewer <unk>)")
    no_repeat_ngram_size: int = option(0, "block repeated n-grams of this size (0: off)", check=at_least(0))
    do_sample: bool = option(False, "sample instead of beam search (fairseq's --sampling; ours is the task mix)")
    temperature: float = option(1.0, "sampling temperature", check=positive)
    sampling_topk: int = option(-1, "sample from the k most likely tokens (-1: all)", check=at_least(-1))
    sampling_topp: float = option(-1.0, "sample from the top-p probability mass (-1: all)", check=check_top_p)
    constraint_range: Optional[str] = option(
        None, 'restrict outputs to vocabulary ids "START,END"', check=check_constraint_range
    )
    fused_step: bool = option(True, "beam search on a CUDA device: the fused Triton step (--no-fused-step: PyTorch's)")


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
class VocabSectionConfig:
    """Vocabulary sizes and tokenizer file (the CLI side of vocab.VocabConfig)."""

    num_bins: int = option(1000, "location bins for box coordinates", check=at_least(1))
    num_codes: int = option(8192, "image-code tokens", check=at_least(0))
    tokenizer: Optional[str] = option(None, "tokenizer.json path (default: the shipped tokenizer)")


@dataclasses.dataclass
class TaskConfig:
    """One task of a YAML config: an instruction, its data and how it is scored and weighted."""

    name: Optional[str] = option(None, "task name; a built-in name (caption, vqa, ...) brings its defaults")
    instruction: Union[str, list[str], None] = option(
        None, 'instruction or list of templates ("|||" also separates templates); default: the built-in one'
    )
    data: Union[str, dict[str, str], None] = option(
        None, "a folder or file holding the <split> data, or a mapping split -> path"
    )
    train_data: Optional[str] = option(None, "train split path (overrides data)")
    valid_data: Optional[str] = option(None, "valid split path (overrides data)")
    test_data: Optional[str] = option(None, "test split path (overrides data)")
    metric: Optional[str] = option(None, "metric name for validation (e.g. cider, bleu, accuracy)")
    references: Optional[str] = option(None, "column holding the references (default: the target column)")
    answers: Union[str, list[str], None] = option(
        None, "closed answer set: a list or a file path (default: distinct train targets)"
    )
    weight: float = option(1.0, "scales this task's loss", check=at_least(0))
    batch_size: Optional[int] = option(None, "rows per batch of this task (default: batch_size)", check=at_least(1))
    options: dict[str, Any] = option({}, "options of a built-in task, passed through as given")


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
    vocab: VocabSectionConfig = section(VocabSectionConfig, "vocabulary sizes and tokenizer")
    tasks: list[TaskConfig] = option([], "the tasks to train on (YAML and overrides; Python passes Task objects)")
