"""VQA soft accuracy: min(#humans who gave the answer / 3, 1), averaged over the leave-one-out subsets."""

from __future__ import annotations

from ..contracts import Metric
from ..registry import register_metric
from .metric_inputs import text_rows
from .vqa_answer import normalize_vqa_answer


def vqa_soft_score(prediction: str, answers: list[str]) -> float:
    """Official VQA accuracy of one prediction against the human answers (normally 10).

    Each answer in turn is left out and the prediction scores min(matches among the rest / 3, 1); the
    mean over the subsets is the score. A single answer is scored as a plain match (1 or 0).
    """
    predicted = normalize_vqa_answer(prediction)
    matches = [normalize_vqa_answer(answer) == predicted for answer in answers]
    if len(matches) == 1:
        return float(matches[0])
    total = sum(matches)
    return sum(min((total - left_out) / 3, 1.0) for left_out in matches) / len(matches)


@register_metric("vqa_score")
class VqaScore(Metric):
    """Mean VQA soft accuracy; references per row are the list of human answers."""

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        texts, answers = text_rows("vqa_score", predictions, references)
        return {"vqa_score": sum(vqa_soft_score(p, a) for p, a in zip(texts, answers)) / len(texts)}
