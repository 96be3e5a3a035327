"""Matthews correlation coefficient for binary and multi-class labels (e.g. CoLA)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable
from typing import Any

from ..contracts import Metric
from ..registry import register_metric
from .accuracy import collapse_whitespace
from .metric_inputs import MetricInputError, check_rows, single_reference


def _label(row: int, value: Any, what: str) -> Hashable:
    """Text labels compare lowercased with whitespace collapsed; other labels (ints, ...) as they are."""
    if isinstance(value, str):
        return collapse_whitespace(value).lower()
    if not isinstance(value, Hashable):
        raise MetricInputError(
            f'metric "mcc": the {what} of row {row} is {value!r}; expected a label (text or number)'
        )
    return value


def matthews_correlation(predicted: list[Hashable], gold: list[Hashable]) -> float:
    """Gorodkin's multi-class MCC: (c*s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2)(s^2 - sum_k t_k^2)).

    s = rows, c = correct rows, p_k / t_k = how often class k is predicted / true. A zero
    denominator (one class only on either side) gives 0.
    """
    samples = len(gold)
    correct = sum(p == t for p, t in zip(predicted, gold))
    predicted_counts, true_counts = Counter(predicted), Counter(gold)
    covariance = correct * samples - sum(predicted_counts[k] * true_counts[k] for k in true_counts)
    predicted_spread = samples**2 - sum(n * n for n in predicted_counts.values())
    true_spread = samples**2 - sum(n * n for n in true_counts.values())
    if predicted_spread == 0 or true_spread == 0:
        return 0.0
    return covariance / math.sqrt(predicted_spread * true_spread)


@register_metric("mcc")
class MatthewsCorrelation(Metric):
    """Matthews correlation in [-1, 1] between predicted and reference labels (one reference per row)."""

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        check_rows("mcc", predictions, references)
        predicted = [_label(row, p, "prediction") for row, p in enumerate(predictions)]
        gold = [_label(row, single_reference("mcc", row, r), "reference") for row, r in enumerate(references)]
        return {"mcc": matthews_correlation(predicted, gold)}
