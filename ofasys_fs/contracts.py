"""The small abstract contract of every registry kind.

Each arrow of the data flow (docs/design.md §1) is one of these: implement the abstract methods, register
the class by name, and the name works in instructions, configs and the CLI.
"""
from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Optional

import torch
from torch import nn


@dataclasses.dataclass
class SampleContext:
    """Where a value is being preprocessed: drives train-only noise and the stateless RNG."""

    split: str = "inference"  # train | valid | test | inference
    task: str = ""
    row_index: int = 0
    epoch: int = 0
    seed: int = 1
    column: str = ""
    base_dir: Optional[str] = None  # folder relative media paths resolve against (the data file's folder)
    image_sizes: Optional[dict] = None  # encoder IMAGE column -> that image's preprocessor output (BOX frames)
    row: Optional[Mapping] = None  # the row, for a slot attribute that names another column (motion's known_mask)

    @property
    def is_train(self) -> bool:
        return self.split == "train"


class Preprocessor(abc.ABC):
    """Raw column value -> tensors for one slot; runs in DataLoader workers on CPU.

    Text-like preprocessors (TEXT, BOX, PHONE, STRUCT, CATEGORY) return {"tokens": LongTensor} without
    `<s>`/`</s>`: collation joins a side's text-like pieces into one group and wraps it once. Others
    return named feature tensors (e.g. {"image": FloatTensor[3, H, W]}) and batch them with `collate`.
    """

    modality: ClassVar[str] = ""
    text_like: ClassVar[bool] = False
    # A decoder slot whose preprocessor is `continuous` gives feature frames (its `__call__` output, batched by
    # `collate`) to an OutputAdaptor instead of tokens; `generator` and `criterion` name the registered generator
    # that decodes it and the default criterion of its tasks, `output_options` the decoding options its
    # `decode_features` reads; `output_template` what a generator starts from for rows without a target
    # (docs/design.md §17). `given_at_inference`: such an output's value is partly given at inference too (motion
    # in-betweening's known frames), so its column is kept as an input and its features reach the generator.
    continuous: ClassVar[bool] = False
    given_at_inference: bool = False
    generator: ClassVar[Optional[str]] = None
    criterion: ClassVar[Optional[str]] = None
    output_options: ClassVar[tuple] = ()

    def __init__(self, slot: Any, vocab: Any, data_cfg: Any = None):
        self.slot, self.vocab, self.data_cfg = slot, vocab, data_cfg

    @abc.abstractmethod
    def __call__(self, value: Any, ctx: SampleContext) -> dict[str, torch.Tensor]:
        """Preprocess one raw value; raise ValueError naming what was expected on bad input."""

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Batch the outputs of `__call__` (pad to the longest); text-like slots are batched centrally."""
        raise NotImplementedError(f"{type(self).__name__} is text-like and is collated as part of a text group")

    def postprocess(self, tokens: list[int], row: Optional[dict] = None) -> Any:
        """Decoded token ids -> the user-facing value (text, box in pixels, ...)."""
        return tokens

    def decode_features(self, frames: torch.Tensor, options: dict) -> dict[str, Any]:
        """A continuous output's generated frames [T, F] -> Output fields (e.g. {"frames", "waveform"})."""
        raise NotImplementedError(f"{type(self).__name__} is not a continuous output preprocessor")

    def output_template(self, rows: int) -> dict[str, torch.Tensor]:
        """A continuous output: the tensors of the decoder piece of `rows` rows without targets, what its generator
        starts from (a fixed-shape output such as motion_6d: zero frames of the shape to generate); {} when the
        generator needs none (audio_mel decides its length as it goes)."""
        return {}


class Adaptor(nn.Module, abc.ABC):
    """A batched slot -> embeddings the shared encoder consumes (plus a padding mask)."""

    @abc.abstractmethod
    def forward(self, batch: dict[str, torch.Tensor]) -> "AdaptorOutput":
        ...

    def required(self, batch: dict[str, torch.Tensor], key: str) -> torch.Tensor:
        """batch[key], or a KeyError naming the adaptor, the piece's modality and the keys the piece has."""
        if batch.get(key) is None:
            name = getattr(type(self), "registered_name", type(self).__name__)
            raise KeyError(f'{name} adaptor: the {batch.get("modality", "?")} piece has no "{key}" tensor '
                           f"(keys: {sorted(batch)})")
        return batch[key]


class OutputAdaptor(Adaptor):
    """The adaptor of a continuous decoder slot (docs/design.md §17): `forward(piece)` embeds the decoder inputs
    [B, T, D] of a collated decoder piece (teacher forcing: built from its target frames; at inference from the
    frames generated so far), and `project(hidden, piece)` maps the decoder's hidden states [B, T, D] back to
    predictions (a dict of tensors the task's criterion and generator read). `causal`: whether the decoder runs
    with a causal mask (autoregressive) or over all positions at once (e.g. diffusion)."""

    causal: ClassVar[bool] = True
    step_dim: int  # values per decoder step of the output frames

    @abc.abstractmethod
    def project(self, hidden: torch.Tensor, piece: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ...


@dataclasses.dataclass
class AdaptorOutput:
    embeddings: torch.Tensor  # [B, T, D]
    padding_mask: torch.Tensor  # [B, T], True where padded
    positions: Optional[torch.Tensor] = None  # [B, T] absolute position ids, or None for 0..T-1
    # relative position bias [B or 1, heads, T, T] for every layer, or [layers, B or 1, heads, T, T]; None: none
    rel_bias: Optional[torch.Tensor] = None
    position_embeddings: Optional[torch.Tensor] = None  # [B or 1, T, D] vectors of the decoupled position bias
    grid: Optional[tuple[int, int]] = None  # (rows, cols) when the tokens are an image's feature grid read row by row


class Model(nn.Module, abc.ABC):
    """An encoder-decoder over slot batches with incremental decoding."""

    @abc.abstractmethod
    def forward(self, sample: dict) -> tuple[Any, dict]:
        """Teacher-forced decoder logits [B, T, V] (a continuous output: its adaptor's predictions dict) and
        extras (encoder output, hidden states)."""


class Criterion(nn.Module, abc.ABC):
    """Loss of one batch (fairseq contract)."""

    @abc.abstractmethod
    def forward(self, model: Model, sample: dict) -> tuple[torch.Tensor, float, dict]:
        """Returns (summed loss, sample size to normalise by, logging outputs)."""

    @staticmethod
    def reduce_metrics(logging_outputs: list[dict]) -> dict[str, float]:
        """Logging outputs of many batches -> the values to log; fairseq's default: the loss per sample_size
        unit in bits, and its perplexity."""
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        loss = sum(log.get("loss", 0.0) for log in logging_outputs) / max(sample_size, 1) / math.log(2)
        return {"loss": loss, "ppl": 2**loss if loss < 1000 else math.inf}


class Generator(abc.ABC):
    """Batched decoding: one list of n-best hypotheses per row (dicts with tokens, score, positional_scores).
    `guidance`: it takes guidance_scale (classifier-free guidance with the empty prompt, guidance.py), and training
    drops the prompt of a condition_dropout share of the rows of the outputs it decodes."""

    guidance: ClassVar[bool] = False

    @abc.abstractmethod
    def generate(self, model: Model, sample: dict, **options) -> list[list[dict]]:
        ...


class Metric(abc.ABC):
    """Corpus-level score of predictions against references (each reference may be a list)."""

    higher_is_better: ClassVar[bool] = True

    @abc.abstractmethod
    def compute(self, predictions: list, references: list) -> dict[str, float]:
        """Returns {name: value}; the first key is the metric's headline value."""


class Vocoder(abc.ABC):
    """Log-mel frames -> waveform (docs/design.md §17); built with `build_vocoder(name, mel: MelSettings, ...)`."""

    @abc.abstractmethod
    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        """Natural-log mel magnitudes [T, bins] -> mono waveform [samples] in [-1, 1] at the settings' rate."""


class OptimizerFactory(abc.ABC):
    """Builds a torch optimizer over the given parameter groups."""

    @abc.abstractmethod
    def build(self, params) -> torch.optim.Optimizer:
        ...


class LRScheduler(abc.ABC):
    """Sets the learning rate per update (fairseq's step_update)."""

    @abc.abstractmethod
    def lr_at(self, num_updates: int) -> float:
        """Learning rate to use at the given update number."""

    def step_update(self, optimizer: torch.optim.Optimizer, num_updates: int) -> float:
        lr = self.lr_at(num_updates)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr


class ImageTokenizer(nn.Module, abc.ABC):
    """Images <-> grids of discrete codes, the vocabulary an IMAGE output is generated in (docs/image_generation.md).

    Set `num_codes`, `grid` (rows, cols), `image_size` (square side in pixels) and `channels` (1 or 3) in
    `__init__`. Pixels are floats in [0, 1]; codes are ints in [0, num_codes).
    """

    num_codes: int
    grid: tuple
    image_size: int
    channels: int

    @abc.abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, channels, image_size, image_size] -> codes LongTensor [B, rows, cols]."""

    @abc.abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, rows, cols] -> images [B, channels, image_size, image_size] in [0, 1]."""

    # Tokenizers that ofasys-train-image-tokenizer can train also define
    # `reconstruction_loss(images) -> (training loss, reconstructions)`; the others are loaded from a file.


class Reranker(abc.ABC):
    """Orders the sampled candidates of each row (generator `code_sampling`): a higher score ranks first."""

    @abc.abstractmethod
    def scores(self, model: Model, sample: dict, hypotheses: list[list[dict]]) -> list[list[float]]:
        """One score per hypothesis of each row (a hypothesis holds its "tokens" and, as "score", the model's
        mean log-likelihood of them)."""


class BaseTask(abc.ABC):
    """A named instruction (or templates) plus its data, metric, criterion and decoding defaults."""

    @abc.abstractmethod
    def add_dataset(self, source: Any, split: str) -> "BaseTask":
        ...
