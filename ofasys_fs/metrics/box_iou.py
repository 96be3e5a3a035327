"""Grounding accuracy: the share of predicted boxes whose IoU with the reference box reaches a threshold."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from typing import Any, Optional

from ..contracts import Metric
from ..registry import register_metric
from .metric_inputs import MetricInputError, check_rows


@dataclasses.dataclass
class AccIouConfig:
    threshold: float = 0.5  # a prediction counts as correct when IoU >= threshold


Box = tuple[float, float, float, float]


def box_iou(first: Sequence[float], second: Sequence[float]) -> float:
    """Intersection over union of two [x0, y0, x1, y1] boxes (continuous coordinates; degenerate boxes have area 0)."""
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    intersection = max(width, 0.0) * max(height, 0.0)
    union = _area(first) + _area(second) - intersection
    return intersection / union if union > 0 else 0.0


def _area(box: Sequence[float]) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def _as_box(row: int, value: Any, what: str) -> Box:
    coordinates = _plain(value)
    if not (
        isinstance(coordinates, (list, tuple))
        and len(coordinates) == 4
        and all(isinstance(v, numbers.Real) and math.isfinite(v) for v in coordinates)
    ):
        raise MetricInputError(
            f'metric "acc_iou": the {what} of row {row} is {value!r}; expected a box [x0, y0, x1, y1] of 4 finite numbers'
        )
    return tuple(float(v) for v in coordinates)


def _reference_boxes(row: int, reference: Any) -> list[Box]:
    """One box, or a list of boxes (the prediction is then scored against the best-matching one)."""
    reference = _plain(reference)
    if isinstance(reference, (list, tuple)) and reference and not isinstance(reference[0], numbers.Real):
        return [_as_box(row, box, "reference") for box in reference]
    return [_as_box(row, reference, "reference")]


def _plain(value: Any) -> Any:
    """Tensors and numpy arrays as (nested) Python lists; anything else unchanged."""
    return value.tolist() if hasattr(value, "tolist") else value


@register_metric("acc_iou", dataclass=AccIouConfig)
class AccIou(Metric):
    """Acc@IoU>=threshold (0.5 by default, as in RefCOCO grounding) and the mean IoU."""

    def __init__(self, cfg: Optional[AccIouConfig] = None):
        self.cfg = cfg or AccIouConfig()

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        check_rows("acc_iou", predictions, references)
        ious = [
            max(
                box_iou(_as_box(row, prediction, "prediction"), gold)
                for gold in _reference_boxes(row, reference)
            )
            for row, (prediction, reference) in enumerate(zip(predictions, references))
        ]
        hits = sum(iou >= self.cfg.threshold for iou in ious)
        return {"acc_iou": hits / len(ious), "mean_iou": sum(ious) / len(ious)}
