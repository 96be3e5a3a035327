"""The "audio" preprocessor: any audio value -> 80-bin Kaldi fbank frames, normalised per bin.

CMVN is global by default (`cmvn=global`): every bin minus its mean over the training split, divided by its
std (DataConfig.audio_cmvn, computed by training and stored in checkpoints, as OFASys's CMVN file), so that
a stationary sound keeps what tells it apart. `cmvn=utterance` normalises each bin over the utterance's own
frames (speech recognition's choice: it removes the channel and the speaker's level, and with them any
constant sound).

Kaldi's fbank expects 16-bit integer sample magnitudes, while `load_audio` returns floats in [-1, 1],
so the waveform is scaled by 32768 first (the log energies then match Kaldi/fairseq speech features).
"""
from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi

from ..contracts import Preprocessor, SampleContext
from ..media import MediaError, load_audio
from ..registry import register_preprocessor
from ..rng import rng_for
from .config import BinStatistics, DataConfig

NUM_MEL_BINS = 80
FRAME_LENGTH_MS = 25.0  # Kaldi's default window; shorter audio has no frame
INT16_SCALE = 32768
# SpecAugment (LibriSpeech "LD" policy for 80 bins): masks of width uniform in [0, max], value 0 = the CMVN mean
FREQ_MASKS, MAX_FREQ_MASK = 2, 27
TIME_MASKS, MAX_TIME_MASK, MAX_TIME_MASK_FRACTION = 2, 40, 0.1


def kaldi_fbank(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Float waveform [samples] in [-1, 1] -> log-mel filterbank [frames, 80] (25 ms window, 10 ms shift)."""
    return kaldi.fbank(waveform.unsqueeze(0) * INT16_SCALE, num_mel_bins=NUM_MEL_BINS, sample_frequency=sample_rate)


def utterance_cmvn(features: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit variance per bin over the utterance's frames (constant bins become 0)."""
    mean = features.mean(dim=0, keepdim=True)
    std = features.var(dim=0, unbiased=False, keepdim=True).clamp_min(1e-10).sqrt()
    return (features - mean) / std


def global_cmvn(features: torch.Tensor, statistics: Optional[BinStatistics]) -> torch.Tensor:
    """Each bin minus the training split's mean, over its std; unchanged without statistics."""
    if statistics is None:
        return features
    mean, std = (torch.tensor(part, dtype=features.dtype) for part in statistics)
    if mean.numel() != features.size(1):
        raise ValueError(f"audio CMVN statistics have {mean.numel()} bins; the features have {features.size(1)}")
    return (features - mean) / std


def spec_augment(features: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Zero FREQ_MASKS frequency bands and TIME_MASKS time spans of a [frames, bins] tensor in place."""
    frames, bins = features.shape
    max_time = min(MAX_TIME_MASK, int(MAX_TIME_MASK_FRACTION * frames))
    for count, max_width, length, axis in ((FREQ_MASKS, MAX_FREQ_MASK, bins, 1), (TIME_MASKS, max_time, frames, 0)):
        for _ in range(count):
            width = int(rng.integers(0, min(max_width, length) + 1))
            start = int(rng.integers(0, length - width + 1))
            features.narrow(axis, start, width).zero_()
    return features


def stack_frames(features: torch.Tensor, frames_per_step: int) -> torch.Tensor:
    """[T, F] -> [ceil(T / k), F * k]: k consecutive frames per step, the last step zero-padded."""
    if frames_per_step == 1:
        return features
    frames, bins = features.shape
    padded = -frames % frames_per_step
    features = torch.cat([features, features.new_zeros(padded, bins)])
    return features.reshape(-1, bins * frames_per_step)


def _describe(value: Any) -> str:
    if isinstance(value, (str, os.PathLike)):
        return f"audio file {os.fspath(value)!r}"
    return f"audio value of type {type(value).__name__}"


def fbank_features(value: Any, base_dir: Optional[str], sample_rate: int) -> torch.Tensor:
    """Any audio value -> log-mel fbank [frames, 80] before CMVN; MediaError when too short for one frame."""
    waveform = load_audio(value, base_dir, target_rate=sample_rate)
    min_samples = int(sample_rate * FRAME_LENGTH_MS / 1000)
    if waveform.numel() < min_samples:
        source = _describe(value)
        raise MediaError(
            f"{source} lasts {1000 * waveform.numel() / sample_rate:.1f} ms; expected at least "
            f"{FRAME_LENGTH_MS:g} ms ({min_samples} samples at {sample_rate} Hz) for one fbank frame",
            source=source,
        )
    return kaldi_fbank(waveform, sample_rate)


def uses_utterance_cmvn(slot: Any) -> bool:
    return slot.attrs.get("cmvn", "global") == "utterance"


@register_preprocessor("audio")
class AudioPreprocessor(Preprocessor):
    """AUDIO slot -> {"fbank": [T / k, 80 k]} (k = n_frames_per_step); SpecAugment on train with use_mask."""

    modality = "AUDIO"

    def __init__(self, slot: Any, vocab: Any, data_cfg: DataConfig):
        super().__init__(slot, vocab, data_cfg)
        self.sample_rate = data_cfg.sample_rate
        self.frames_per_step = int(slot.attrs.get("n_frames_per_step") or 1)
        self.use_mask = bool(slot.attrs.get("use_mask"))
        self.utterance_cmvn = uses_utterance_cmvn(slot)
        self.statistics = data_cfg.audio_cmvn

    def __call__(self, value: Any, ctx: SampleContext) -> dict[str, torch.Tensor]:
        features = fbank_features(value, ctx.base_dir, self.sample_rate)
        features = utterance_cmvn(features) if self.utterance_cmvn else global_cmvn(features, self.statistics)
        if self.use_mask and ctx.is_train:
            spec_augment(features, rng_for(ctx.seed, ctx.task, ctx.epoch, ctx.row_index, f"spec_augment:{ctx.column}"))
        return {"fbank": stack_frames(features, self.frames_per_step)}

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Zero-pad to the longest: fbank [B, T, F], fbank_lengths [B], padding_mask [B, T] (True = pad)."""
        if not items:
            raise ValueError("cannot collate an empty list of AUDIO items")
        features = [item["fbank"] for item in items]
        lengths = torch.tensor([f.size(0) for f in features], dtype=torch.long)
        batch = torch.nn.utils.rnn.pad_sequence(features, batch_first=True)
        padding_mask = torch.arange(batch.size(1)).unsqueeze(0) >= lengths.unsqueeze(1)
        return {"fbank": batch, "fbank_lengths": lengths, "padding_mask": padding_mask}
