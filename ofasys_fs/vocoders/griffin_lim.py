"""Vocoder "griffin_lim" (the default, no weights): mel magnitudes back to a linear spectrogram by least squares,
then Griffin-Lim phase recovery. Speech stays recognisable (docs/tasks/speech.md measures it)."""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torchaudio

from ..contracts import Vocoder
from ..mel import LOG_FLOOR, MelSettings
from ..registry import register_vocoder


@dataclasses.dataclass
class GriffinLimConfig:
    n_iter: int = 32  # phase-recovery iterations: 32 costs about 0.04 s per second of 16 kHz audio on one core
    seed: int = 0  # the random initial phase, for reproducible output

    def __post_init__(self):
        if self.n_iter < 1:
            raise ValueError(f"griffin_lim: n_iter must be >= 1, got {self.n_iter}")


@register_vocoder("griffin_lim", dataclass=GriffinLimConfig)
class GriffinLimVocoder(Vocoder):
    """InverseMelScale(driver="gelsd") + GriffinLim; the default least-squares driver fails on the rank-deficient
    filter bank of many bins at a short window, gelsd does not."""

    def __init__(self, cfg: Optional[GriffinLimConfig], mel: MelSettings):
        self.cfg, self.mel = cfg or GriffinLimConfig(), mel
        self.inverse_mel = torchaudio.transforms.InverseMelScale(mel.n_stft, mel.bins, mel.sample_rate, driver="gelsd")
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=mel.win_length, win_length=mel.win_length, hop_length=mel.hop_length, power=1.0,
            n_iter=self.cfg.n_iter)

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel frames [T, bins] -> hop x (T - 1) samples. torchaudio's Griffin-Lim fails on signals shorter
        than half a window (a micro model may stop after a step or two), so short ones are padded with silent
        frames and the waveform cut back."""
        frames = mel.size(0)
        shortest = self.mel.win_length // (2 * self.mel.hop_length) + 2
        if frames < shortest:
            mel = torch.cat([mel, mel.new_full((shortest - frames, mel.size(1)), LOG_FLOOR)])
        magnitudes = self.inverse_mel(mel.float().exp().transpose(0, 1)).clamp_min(0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            samples = self.griffin_lim(magnitudes).clamp(-1.0, 1.0)
        return samples[:self.mel.hop_length * max(frames - 1, 0)]
