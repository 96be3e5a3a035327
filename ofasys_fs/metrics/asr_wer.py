"""Metric "asr_wer": the word error rate of an offline recogniser (pocketsphinx) listening to generated speech."""
from __future__ import annotations

import dataclasses
from typing import Optional

from ..contracts import Metric
from ..registry import register_metric
from .edit_distance import edit_distance, normalize_for_error_rate
from .metric_inputs import MetricInputError, check_rows, single_reference, text_value
from .speech_recognizer import Recognizer


@dataclasses.dataclass
class ASRWERConfig:
    # "references": a fixed-length grammar over the words of all references (closed-vocabulary tasks such as
    # digit strings); "open": pocketsphinx's English language model
    grammar: str = "references"

    def __post_init__(self):
        if self.grammar not in ("references", "open"):
            raise ValueError(f'asr_wer: grammar must be "references" or "open", got {self.grammar!r}')


@register_metric("asr_wer", dataclass=ASRWERConfig)
class ASRWordErrorRate(Metric):
    """Predictions: Waveforms (Output.waveform) or audio files; references: their texts.
    asr_wer = corpus word edits / reference words (lower is better); also the sentence accuracy."""

    higher_is_better = False
    recognizer: Optional[Recognizer] = None  # one per process: loading the model takes about a second

    def __init__(self, cfg: Optional[ASRWERConfig] = None):
        self.cfg = cfg or ASRWERConfig()

    def transcripts(self, predictions: list, references: list[str]) -> list[str]:
        if ASRWordErrorRate.recognizer is None:
            ASRWordErrorRate.recognizer = Recognizer()
        words = sorted({word for text in references for word in text.split()})
        closed = self.cfg.grammar == "references"
        return [self.recognizer.transcribe(audio, words if closed else None, len(reference.split()))
                for audio, reference in zip(predictions, references)]

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        check_rows("asr_wer", predictions, references)
        texts = [normalize_for_error_rate(text_value("asr_wer", row, single_reference("asr_wer", row, reference),
                                                     "reference")) for row, reference in enumerate(references)]
        if not any(texts):
            raise MetricInputError('metric "asr_wer": every reference is empty after normalisation; no rate exists')
        heard = self.transcripts(predictions, texts)
        edits = sum(edit_distance(h.split(), t.split()) for h, t in zip(heard, texts))
        exact = sum(h.split() == t.split() for h, t in zip(heard, texts))
        return {"asr_wer": edits / sum(len(t.split()) for t in texts), "asr_sentence_accuracy": exact / len(texts)}
