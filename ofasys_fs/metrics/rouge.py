"""ROUGE-1/2/L F1 on lowercased whitespace tokens; the best reference per row, averaged over rows."""

from __future__ import annotations

from collections import Counter

from ..contracts import Metric
from ..registry import register_metric
from .metric_inputs import text_rows


def ngram_counts(tokens: list[str], n: int) -> Counter:
    """How often each n-gram (as a tuple) occurs in the tokens."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def longest_common_subsequence(first: list[str], second: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (dynamic programming, one row kept)."""
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0]
        for j, other in enumerate(second):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def f1(overlap: int, predicted_total: int, reference_total: int) -> float:
    """Harmonic mean of precision overlap/predicted_total and recall overlap/reference_total (0 if empty)."""
    if overlap == 0:
        return 0.0
    precision, recall = overlap / predicted_total, overlap / reference_total
    return 2 * precision * recall / (precision + recall)


def rouge_scores(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F1 of one prediction against one reference."""
    predicted, gold = prediction.lower().split(), reference.lower().split()
    scores = {}
    for n in (1, 2):
        predicted_ngrams, gold_ngrams = ngram_counts(predicted, n), ngram_counts(gold, n)
        overlap = sum((predicted_ngrams & gold_ngrams).values())
        scores[f"rouge_{n}"] = f1(overlap, sum(predicted_ngrams.values()), sum(gold_ngrams.values()))
    scores["rouge_l"] = f1(longest_common_subsequence(predicted, gold), len(predicted), len(gold))
    return scores


@register_metric("rouge")
class Rouge(Metric):
    """ROUGE-1/2/L F1 (Lin 2004), each the max over a row's references, then the mean over rows."""

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        texts, reference_texts = text_rows("rouge", predictions, references)
        totals = {"rouge_l": 0.0, "rouge_1": 0.0, "rouge_2": 0.0}
        for prediction, refs in zip(texts, reference_texts):
            per_reference = [rouge_scores(prediction, reference) for reference in refs]
            for key in totals:
                totals[key] += max(scores[key] for scores in per_reference)
        return {key: total / len(texts) for key, total in totals.items()}
