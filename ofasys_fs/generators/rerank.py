"""Rerankers of sampled code candidates (generator `code_sampling`, option `reranker`); a plugin registers its
own with `register_reranker` (e.g. an image-text model that scores decoded images against the caption)."""
from __future__ import annotations

from ..contracts import Reranker
from ..registry import register_reranker


@register_reranker("likelihood")
class LikelihoodReranker(Reranker):
    """The model's own mean log-likelihood of each candidate given the row (the hypothesis' score)."""

    def scores(self, model, sample: dict, hypotheses: list[list[dict]]) -> list[list[float]]:
        return [[float(hypothesis["score"]) for hypothesis in row] for row in hypotheses]


@register_reranker("none")
class SamplingOrder(Reranker):
    """No reranking: candidates stay in the order they were sampled (the baseline of reranking)."""

    def scores(self, model, sample: dict, hypotheses: list[list[dict]]) -> list[list[float]]:
        return [[0.0] * len(row) for row in hypotheses]
