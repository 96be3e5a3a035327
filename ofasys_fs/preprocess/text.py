"""The text pipeline every text-like slot shares, and the "text" preprocessor.

Per slot (docs/design.md §4): normalise (uncased, no_punctuation) -> tokenise (`vocab.encode_piece`) -> truncate
(max_length) -> on the train split only: BART span masking (mask_ratio) and random token replacement
(noise_ratio). All randomness comes from the stateless `rng_for`, so it is a function of
(seed, task, epoch, row, slot) alone.
"""
from __future__ import annotations

import math
import string
import unicodedata
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import torch

from ..contracts import Preprocessor, SampleContext
from ..registry import register_preprocessor
from ..rng import rng_for

SPAN_POISSON_LAMBDA = 3.0  # BART's mean span length


def normalise_text(text: str, uncased: bool = False, no_punctuation: bool = False) -> str:
    """Lower-case and/or drop punctuation (ASCII and Unicode), then collapse runs of whitespace."""
    if uncased:
        text = text.lower()
    if no_punctuation:
        text = "".join(c for c in text if c not in string.punctuation and not unicodedata.category(c).startswith("P"))
    return " ".join(text.split())


def span_mask(tokens: Sequence[int], ratio: float, rng: np.random.Generator, mask_id: int) -> list[int]:
    """BART text infilling: mask round(len * ratio) tokens in spans of Poisson(3) length (at least 1);
    every run of masked tokens becomes one `mask_id`."""
    count = len(tokens)
    goal = int(round(count * ratio))
    if goal == 0:
        return list(tokens)
    masked = np.zeros(count, dtype=bool)
    done = 0
    while done < goal:
        length = int(min(max(rng.poisson(SPAN_POISSON_LAMBDA), 1), goal - done))
        start = int(rng.integers(0, count - length + 1))
        done += int((~masked[start:start + length]).sum())
        masked[start:start + length] = True
    out = []
    for index, token in enumerate(tokens):
        if not masked[index]:
            out.append(token)
        elif index == 0 or not masked[index - 1]:
            out.append(mask_id)
    return out


def replace_randomly(tokens: Sequence[int], ratio: float, rng: np.random.Generator, id_range: range,
                     keep: int) -> list[int]:
    """Replace round(n * ratio) of the tokens other than `keep` (the mask id) by random ids from `id_range`."""
    out = list(tokens)
    candidates = [i for i, token in enumerate(out) if token != keep]
    chosen = rng.choice(len(candidates), size=int(round(len(candidates) * ratio)), replace=False)
    for index in sorted(chosen.tolist()):
        out[candidates[index]] = int(rng.integers(id_range.start, id_range.stop))
    return out


def as_text(value: Any, what: str) -> str:
    """A str (or a finite number, written in decimal) as text; ValueError naming `what` otherwise."""
    if isinstance(value, str):
        return value
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if number and math.isfinite(value):
        return str(value)
    raise ValueError(f"{what} expects a string, got {type(value).__name__}: {value!r}")


class TextLikePreprocessor(Preprocessor):
    """The shared pipeline: subclasses change how a value becomes text (`normalised`) or ids (`ids_of`)."""

    modality = "TEXT"
    text_like = True

    def __init__(self, slot: Any, vocab: Any, data_cfg: Any = None):
        super().__init__(slot, vocab, data_cfg)
        attrs = slot.attrs
        self.uncased = bool(attrs.get("uncased"))
        self.no_punctuation = bool(attrs.get("no_punctuation"))
        self.max_length: Optional[int] = attrs.get("max_length")
        self.mask_ratio = float(attrs.get("mask_ratio") or 0.0)
        self.noise_ratio = float(attrs.get("noise_ratio") or 0.0)
        self.drop_ratio = float(attrs.get("drop_ratio") or 0.0)

    @property
    def what(self) -> str:
        return f"{self.registered_name} slot {self.slot}"

    def text_of(self, value: Any, ctx: Optional[SampleContext]) -> str:
        """The raw text; a list of references gives one: drawn per (row, epoch) on train, else the first."""
        if isinstance(value, (list, tuple)):
            if not value:
                raise ValueError(f"{self.what} got an empty list; expected a string or a non-empty list of strings")
            index = int(self.rng(ctx, "choice").integers(len(value))) if ctx is not None and ctx.is_train else 0
            value = value[index]
        return as_text(value, self.what)

    def normalised(self, value: Any, ctx: Optional[SampleContext]) -> str:
        return normalise_text(self.text_of(value, ctx), self.uncased, self.no_punctuation)

    def ids_of(self, text: str) -> list[int]:
        return self.vocab.encode_piece(text)

    def tokenize(self, value: Any, ctx: Optional[SampleContext] = None) -> list[int]:
        """Normalise, tokenise and truncate, without train-time noise (closed-set answers use this too)."""
        return self.truncate(self.ids_of(self.normalised(value, ctx)))

    def truncate(self, ids: list[int]) -> list[int]:
        return ids[: self.max_length] if self.max_length is not None else ids

    def rng(self, ctx: SampleContext, what: str) -> np.random.Generator:
        """This slot's generator for one purpose; slots differ by side, text group and column."""
        purpose = f"{self.slot.side}.{self.slot.group}.{ctx.column or self.slot.name}:{what}"
        return rng_for(ctx.seed, ctx.task, ctx.epoch, ctx.row_index, purpose)

    def noised(self, ids: list[int], ctx: SampleContext) -> list[int]:
        """Dropping the whole text, else span masking, then random replacement (train split only)."""
        if not ctx.is_train or not (self.mask_ratio or self.noise_ratio or self.drop_ratio):
            return ids
        rng = self.rng(ctx, "noise")
        if self.drop_ratio and rng.random() < self.drop_ratio:
            return []
        if self.mask_ratio:
            ids = span_mask(ids, self.mask_ratio, rng, self.vocab.mask)
        if self.noise_ratio:
            ids = replace_randomly(ids, self.noise_ratio, rng, self.vocab.range("text"), self.vocab.mask)
        return ids

    def __call__(self, value: Any, ctx: SampleContext) -> dict[str, torch.Tensor]:
        return {"tokens": torch.tensor(self.noised(self.tokenize(value, ctx), ctx), dtype=torch.long)}

    def postprocess(self, tokens: list[int], row: Optional[dict] = None) -> str:
        """Decoded ids -> the text (specials left out, surrounding spaces stripped)."""
        return self.vocab.decode(tokens).strip()


@register_preprocessor("text")
class TextPreprocessor(TextLikePreprocessor):
    """TEXT slot: a string (or a list of reference strings) -> BPE ids."""
