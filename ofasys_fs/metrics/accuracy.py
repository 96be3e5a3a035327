"""Exact-match accuracies: "accuracy" (case-insensitive, for closed answer sets) and "exact_match" (strict)."""

from __future__ import annotations

import abc

from ..contracts import Metric
from ..registry import register_metric
from .metric_inputs import text_rows


def collapse_whitespace(text: str) -> str:
    """The text stripped, with every run of whitespace replaced by one space."""
    return " ".join(text.split())


class MatchRate(Metric):
    """Fraction of rows whose normalised prediction equals any of the row's normalised references."""

    @abc.abstractmethod
    def normalize(self, text: str) -> str:
        """The form in which prediction and references are compared."""

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        texts, reference_texts = text_rows(self.registered_name, predictions, references)
        hits = sum(
            self.normalize(prediction) in {self.normalize(reference) for reference in refs}
            for prediction, refs in zip(texts, reference_texts)
        )
        return {self.registered_name: hits / len(texts)}


@register_metric("accuracy")
class Accuracy(MatchRate):
    """Classification accuracy for closed answer sets: match after lowercasing and whitespace collapsing."""

    def normalize(self, text: str) -> str:
        return collapse_whitespace(text).lower()


@register_metric("exact_match")
class ExactMatch(MatchRate):
    """Strict exact match: only surrounding and repeated whitespace is ignored; case and punctuation count."""

    def normalize(self, text: str) -> str:
        return collapse_whitespace(text)
