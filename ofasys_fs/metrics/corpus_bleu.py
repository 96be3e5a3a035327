"""Corpus BLEU by the sacrebleu package (its default 13a tokenisation, 0-100 scale)."""

from __future__ import annotations

import sacrebleu

from ..contracts import Metric
from ..registry import register_metric
from .metric_inputs import text_rows


@register_metric("sacrebleu")
class SacreBleu(Metric):
    """sacreBLEU corpus BLEU (Post 2018); rows may have different numbers of references."""

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        texts, reference_texts = text_rows("sacrebleu", predictions, references)
        most = max(len(refs) for refs in reference_texts)
        # sacrebleu takes one stream per reference position; None marks a row with fewer references.
        streams = [[refs[k] if k < len(refs) else None for refs in reference_texts] for k in range(most)]
        result = sacrebleu.corpus_bleu(texts, streams)
        return {"sacrebleu": float(result.score), "brevity_penalty": float(result.bp)}
