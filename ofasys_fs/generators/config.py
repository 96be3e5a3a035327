"""GenerationConfig: the one declaration of every decoding option (docs/generation.md, "Options").

The sequence generator, `ofasys-generate`/`validate`/`interactive` flags, the `generation` section of the
training config (YAML, `ofasys-train`), `OFASys.inference(...)` keywords and task decoding defaults all
use these names. A field left at None is *not set*: a task's or the output kind's default applies, then
the `fallback` in its metadata. So a config (and a checkpoint) records what the user set, nothing else.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional, Union

from ..errors import ConfigError
from ..options import at_least, check_fields, fraction, option, positive

# Per-call names that mean a field under another name: fairseq's --sampling, and the sampling seed.
OPTION_ALIASES = {"sampling": "do_sample", "seed": "sampling_seed"}


def parse_range(value: Union[str, tuple, list]) -> tuple[int, int]:
    """fairseq's "START,END" (or a pair) -> (start, end), end exclusive."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", value)
        if match is None:
            raise ValueError('expected "START,END": two vocabulary ids, e.g. "50265,51265"')
        return int(match.group(1)), int(match.group(2))
    if len(value) != 2:
        raise ValueError("expected (start, end)")
    return int(value[0]), int(value[1])


def check_range(value: Any) -> None:
    """Check a constraint range (when given)."""
    if value is not None:
        parse_range(value)


def check_topk(value: Optional[int]) -> None:
    """-1 (off) or at least 1."""
    if value is not None and value != -1 and value < 1:
        raise ValueError("must be -1 (off) or >= 1")


def check_topp(value: Optional[float]) -> None:
    """-1 (off) or a probability mass in (0, 1]."""
    if value is not None and value != -1 and not 0 < value <= 1:
        raise ValueError("must be -1 (off) or in (0, 1]")


@dataclasses.dataclass
class GenerationConfig:
    """Decoding options; None = not set (the task's or output kind's default, else the fallback)."""

    beam: Optional[int] = option(None, "beam size; 1: greedy; with do_sample, samples per row", fallback=5,
                                 check=at_least(1))
    nbest: Optional[int] = option(None, "hypotheses returned per row (at most beam)", fallback=1, check=at_least(1))
    max_len_a: Optional[float] = option(None, "maximum length = max_len_a * source length + max_len_b",
                                        fallback=0.0, check=at_least(0))
    max_len_b: Optional[int] = option(None, "maximum length = max_len_a * source length + max_len_b",
                                      fallback=200, check=at_least(0))
    min_len: Optional[int] = option(None, "no </s> before this many generated tokens", fallback=1,
                                    check=at_least(0))
    lenpen: Optional[float] = option(None, "length penalty exponent: score = log-prob sum / length ** lenpen",
                                     fallback=1.0)
    unkpen: Optional[float] = option(None, "subtracted from <unk>'s log-prob", fallback=0.0)
    temperature: Optional[float] = option(None, "logits are divided by it", fallback=1.0, check=positive)
    do_sample: Optional[bool] = option(None, "sample instead of beam search (fairseq's --sampling; ours names the "
                                             "task mix)", fallback=False)
    sampling_topk: Optional[int] = option(None, "sample among the k most likely tokens (-1: all)", fallback=-1,
                                          check=check_topk)
    sampling_topp: Optional[float] = option(None, "sample among the top-p probability mass (-1: all)", fallback=-1.0,
                                            check=check_topp)
    sampling_seed: Optional[int] = option(None, "seed of the sampling RNG of a call (None: torch's global RNG)",
                                          fallback=None, check=at_least(0))
    no_repeat_ngram_size: Optional[int] = option(None, "block repeated n-grams of this size (0: off)", fallback=0,
                                                 check=at_least(0))
    constraint_range: Union[str, tuple[int, int], None] = option(
        None, 'restrict outputs to vocabulary ids "START,END" (end exclusive)', fallback=None, check=check_range)
    allow_eos: Optional[bool] = option(None, "with constraint_range or allowed_tokens: </s> stays allowed",
                                       fallback=True)
    exhaustive: Optional[bool] = option(None, "score every answer of a closed set instead of searching",
                                        fallback=False)
    guidance_scale: Optional[float] = option(
        None, "IMAGE and MOTION outputs: classifier-free guidance, uncond + scale x (cond - uncond) with the empty "
              "prompt for uncond (trained by condition_dropout); 1: the conditional prediction alone (OFASys's "
              "guidance weight w is scale 1 + w)", fallback=1.0, check=at_least(0))
    reranker: Optional[str] = option(None, "code outputs (IMAGE): registered reranker ordering the sampled "
                                           "candidates (likelihood, none; plugins add more)", fallback="likelihood")
    stop_threshold: Optional[float] = option(None, "continuous outputs (speech): stop when the stop probability "
                                                   "passes this", fallback=0.5, check=fraction)
    vocoder: Optional[str] = option(None, "AUDIO outputs: the registered vocoder turning mel frames into a waveform "
                                          "(griffin_lim, torchscript)", fallback="griffin_lim")
    vocoder_path: Optional[str] = option(None, "AUDIO outputs: the file of the torchscript vocoder", fallback=None)
    diffusion_steps: Optional[int] = option(None, "outputs generated by diffusion (MOTION): DDIM denoising steps",
                                            fallback=50, check=at_least(1))
    fused_step: Optional[bool] = option(None, "beam search on a CUDA device: the fused Triton step "
                                              "(--no-fused-step: PyTorch's)", fallback=True)

    def __post_init__(self) -> None:
        check_fields(self, "generation option")
        beam = self.beam if self.beam is not None else _fallback("beam")
        if self.nbest is not None and self.nbest > beam:
            raise ConfigError(f"generation option nbest={self.nbest}: expected between 1 and beam ({beam})")
        if isinstance(self.constraint_range, str):
            self.constraint_range = parse_range(self.constraint_range)

    def given(self) -> dict[str, Any]:
        """The options that are set (not None)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if getattr(self, field.name) is not None}

    def resolved(self) -> "GenerationConfig":
        """A copy with every unset option at its fallback."""
        return dataclasses.replace(self, **{field.name: field.metadata["fallback"] for field in dataclasses.fields(self)
                                            if getattr(self, field.name) is None})


def _fallback(name: str) -> Any:
    return GenerationConfig.__dataclass_fields__[name].metadata["fallback"]
