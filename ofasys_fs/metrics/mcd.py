"""Metric "mcd": mel-cepstral distortion between generated and reference speech as fairseq's speech-synthesis
evaluation (and OFASys's text_to_speech task) defines it: the root-mean-square difference of 13 MFCCs per frame,
averaged along the dynamic-time-warping path (lower is better)."""
from __future__ import annotations

import numpy as np
import torch
import torchaudio

from ..contracts import Metric
from ..registry import register_metric
from ..mel import Waveform
from .metric_inputs import check_rows, single_reference
from .speech_recognizer import RECOGNIZER_RATE, audio_samples

CEPSTRA = 13


def mel_cepstra(samples: torch.Tensor, rate: int = RECOGNIZER_RATE) -> np.ndarray:
    """[frames, 13] MFCCs of an 80-band log-mel from 20 Hz (50 ms window, 12.5 ms hop)."""
    window = int(0.05 * rate)
    transform = torchaudio.transforms.MFCC(rate, n_mfcc=CEPSTRA, log_mels=True, melkwargs={
        "n_fft": window, "win_length": window, "hop_length": int(0.0125 * rate), "n_mels": 80, "f_min": 20.0})
    return transform(samples.float()).transpose(0, 1).double().numpy()


def dtw_mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean RMS frame distance along the cheapest monotonic alignment of [M, D] and [N, D]."""
    distance = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).mean(-1))
    rows, cols = distance.shape
    cost = np.full((rows + 1, cols + 1), np.inf)
    steps = np.zeros((rows + 1, cols + 1), dtype=np.int64)
    cost[0, 0] = 0.0
    for i in range(1, rows + 1):
        for j in range(1, cols + 1):
            moves = ((cost[i - 1, j - 1], steps[i - 1, j - 1]), (cost[i - 1, j], steps[i - 1, j]),
                     (cost[i, j - 1], steps[i, j - 1]))
            best, length = min(moves, key=lambda move: move[0])
            cost[i, j], steps[i, j] = best + distance[i - 1, j - 1], length + 1
    return float(cost[rows, cols] / steps[rows, cols])


@register_metric("mcd")
class MelCepstralDistortion(Metric):
    """Predictions and references: Waveforms (Output.waveform) or audio files. mcd: mean over rows of the
    DTW-aligned distance."""

    higher_is_better = False

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        check_rows("mcd", predictions, references)
        values = []
        for row, (prediction, reference) in enumerate(zip(predictions, references)):
            generated = mel_cepstra(audio_samples(prediction))
            if not isinstance(reference, Waveform):  # a Waveform is one reference, not a list of two
                reference = single_reference("mcd", row, reference)
            target = mel_cepstra(audio_samples(reference))
            values.append(dtw_mean_distance(generated, target))
        return {"mcd": float(np.mean(values))}
