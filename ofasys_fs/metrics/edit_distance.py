"""Word and character error rates: corpus edit distance over corpus reference length, lower is better."""

from __future__ import annotations

import abc
import unicodedata
from collections.abc import Sequence

from ..contracts import Metric
from ..registry import register_metric
from .metric_inputs import MetricInputError, check_rows, single_reference, text_value


def normalize_for_error_rate(text: str) -> str:
    """Lowercased, every punctuation character (Unicode class P) deleted, whitespace collapsed."""
    kept = "".join(c for c in text.lower() if not unicodedata.category(c).startswith("P"))
    return " ".join(kept.split())


def edit_distance(hypothesis: Sequence, reference: Sequence) -> int:
    """Levenshtein distance: fewest substitutions, deletions and insertions turning one into the other."""
    previous = list(range(len(reference) + 1))
    for i, item in enumerate(hypothesis, start=1):
        current = [i]
        for j, other in enumerate(reference, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (item != other)))
        previous = current
    return previous[-1]


class ErrorRate(Metric):
    """Sum of edit distances over the sum of reference lengths, in units chosen by `units`."""

    higher_is_better = False

    @abc.abstractmethod
    def units(self, text: str) -> Sequence:
        """The sequence that edits count over (words or characters) of a normalised text."""

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        name = self.registered_name
        check_rows(name, predictions, references)
        edits = length = 0
        for row, (prediction, reference) in enumerate(zip(predictions, references)):
            reference = single_reference(name, row, reference)
            hypothesis = self.units(normalize_for_error_rate(text_value(name, row, prediction, "prediction")))
            gold = self.units(normalize_for_error_rate(text_value(name, row, reference, "reference")))
            edits += edit_distance(hypothesis, gold)
            length += len(gold)
        if length == 0:
            raise MetricInputError(
                f'metric "{name}": every reference is empty after normalisation; no rate exists'
            )
        return {name: edits / length}


@register_metric("wer")
class WordErrorRate(ErrorRate):
    """Word error rate (WER) over normalised whitespace-separated words."""

    def units(self, text: str) -> Sequence:
        return text.split()


@register_metric("cer")
class CharacterErrorRate(ErrorRate):
    """Character error rate (CER) over the normalised text, single spaces counted as characters."""

    def units(self, text: str) -> Sequence:
        return text
