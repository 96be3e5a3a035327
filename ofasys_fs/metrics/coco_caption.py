"""COCO caption metrics, CIDEr-D and BLEU-1..4, computed by pycocoevalcap's own scorers."""

from __future__ import annotations

import abc
import dataclasses
from typing import Optional

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from ..contracts import Metric
from ..registry import register_metric
from .caption_tokenizer import tokenize_captions
from .metric_inputs import MetricInputError, text_rows


@dataclasses.dataclass
class CocoCaptionConfig:
    use_java: Optional[bool] = None  # PTB tokenisation: True = Stanford via Java, False = Python, None = auto


class CocoCaptionMetric(Metric):
    """Shared part of the COCO scorers: check rows, PTB-tokenise, call the scorer on {row: [caption]}."""

    def __init__(self, cfg: Optional[CocoCaptionConfig] = None):
        self.cfg = cfg or CocoCaptionConfig()

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        name = self.registered_name
        texts, reference_texts = text_rows(name, predictions, references)
        flat_references = [text for refs in reference_texts for text in refs]
        tokens = tokenize_captions(texts + flat_references, use_java=self.cfg.use_java)
        if not any(tokens[len(texts) :]):
            raise MetricInputError(f'metric "{name}": every reference is empty after tokenisation')
        results = {row: [caption] for row, caption in enumerate(tokens[: len(texts)])}
        gold, start = {}, len(texts)
        for row, refs in enumerate(reference_texts):
            gold[row] = tokens[start : start + len(refs)]
            start += len(refs)
        return self.score(gold, results)

    @abc.abstractmethod
    def score(self, gold: dict[int, list[str]], results: dict[int, list[str]]) -> dict[str, float]:
        """Scores of tokenised captions, in pycocoevalcap's {id: [caption, ...]} form."""


@register_metric("cider", dataclass=CocoCaptionConfig)
class CiderD(CocoCaptionMetric):
    """CIDEr-D (Vedantam et al. 2015) as in the COCO caption evaluation; idf comes from the references."""

    def score(self, gold: dict[int, list[str]], results: dict[int, list[str]]) -> dict[str, float]:
        value, _ = Cider().compute_score(gold, results)
        return {"cider": float(value)}


@register_metric("bleu", dataclass=CocoCaptionConfig)
class CocoBleu(CocoCaptionMetric):
    """Corpus BLEU-1..4 of the COCO caption evaluation (closest reference length); headline BLEU-4."""

    def score(self, gold: dict[int, list[str]], results: dict[int, list[str]]) -> dict[str, float]:
        values, _ = Bleu(4).compute_score(gold, results, verbose=0)
        return {"bleu_4": float(values[3]), **{f"bleu_{n}": float(values[n - 1]) for n in (1, 2, 3)}}
