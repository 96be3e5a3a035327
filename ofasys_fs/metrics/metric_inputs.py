"""Checks and shaping shared by every metric: rows pair up, nothing is missing, references become lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import DataError


class MetricInputError(DataError):
    """Predictions or references that a metric cannot score; the message names the metric and the row."""


def check_rows(metric: str, predictions: Sequence, references: Sequence) -> None:
    """Raise unless predictions and references are equally long, non-empty and free of None."""
    if len(predictions) == 0:
        raise MetricInputError(f'metric "{metric}": no predictions to score (an empty list has no score)')
    if len(predictions) != len(references):
        raise MetricInputError(
            f'metric "{metric}": {len(predictions)} predictions but {len(references)} references; '
            f"they must pair up row by row"
        )
    for row, (prediction, reference) in enumerate(zip(predictions, references)):
        if prediction is None:
            raise MetricInputError(
                f'metric "{metric}": the prediction of row {row} is None (nothing was generated)'
            )
        if reference is None:
            raise MetricInputError(f'metric "{metric}": the reference of row {row} is None')


def text_value(metric: str, row: int, value: Any, what: str) -> str:
    """The value itself when it is a string; otherwise an error naming the row."""
    if not isinstance(value, str):
        raise MetricInputError(
            f'metric "{metric}": the {what} of row {row} is {type(value).__name__} {value!r}, expected a string'
        )
    return value


def reference_list(metric: str, row: int, reference: Any) -> list:
    """A row's references as a non-empty list: one value becomes a list of one."""
    if isinstance(reference, (list, tuple)):
        if not reference:
            raise MetricInputError(f'metric "{metric}": row {row} has an empty list of references')
        return list(reference)
    return [reference]


def single_reference(metric: str, row: int, reference: Any) -> Any:
    """A row's only reference; a one-element list is unwrapped, several references are an error."""
    references = reference_list(metric, row, reference)
    if len(references) != 1:
        raise MetricInputError(
            f'metric "{metric}": row {row} has {len(references)} references; this metric takes exactly one per row'
        )
    return references[0]


def text_rows(metric: str, predictions: Sequence, references: Sequence) -> tuple[list[str], list[list[str]]]:
    """Checked text predictions and, per row, the non-empty list of text references."""
    check_rows(metric, predictions, references)
    texts = [text_value(metric, row, p, "prediction") for row, p in enumerate(predictions)]
    reference_texts = [
        [text_value(metric, row, r, "reference") for r in reference_list(metric, row, refs)]
        for row, refs in enumerate(references)
    ]
    return texts, reference_texts
