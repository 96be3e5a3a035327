"""Log-mel frames of speech outputs (docs/design.md §17): one set of settings shared by the audio_mel
preprocessor (targets), its adaptor (sizes) and the vocoders (the way back to a waveform)."""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import torch
import torchaudio

MEL_FLOOR = 1e-5  # magnitudes are clamped here before the log: silence is log(MEL_FLOOR)
LOG_FLOOR = math.log(MEL_FLOOR)


@dataclasses.dataclass(frozen=True)
class MelSettings:
    """What one mel frame is: natural-log mel magnitudes (power 1) of a Hann window, HTK mel scale, 0 Hz to
    Nyquist, with `frames_per_step` frames stacked per decoder step."""

    sample_rate: int = 16000
    bins: int = 80
    hop_length: int = 160
    win_length: int = 400
    frames_per_step: int = 1

    @classmethod
    def of(cls, cfg: Any) -> "MelSettings":
        """From a DataConfig (sample_rate, mel_*) or a ModelConfig plus the default rate."""
        return cls(getattr(cfg, "sample_rate", cls.sample_rate), cfg.mel_bins, cfg.mel_hop_length,
                   cfg.mel_win_length, cfg.mel_frames_per_step)

    @property
    def step_dim(self) -> int:
        """Values per decoder step: bins x frames_per_step."""
        return self.bins * self.frames_per_step

    @property
    def n_stft(self) -> int:
        return self.win_length // 2 + 1

    def check(self) -> None:
        """ValueError when the settings cannot describe a mel frame (window longer than a second, more bins than
        FFT bins)."""
        if self.win_length > self.sample_rate:
            raise ValueError(f"mel window of {self.win_length} samples is longer than one second at "
                             f"{self.sample_rate} Hz")
        if self.bins > self.n_stft:
            raise ValueError(f"{self.bins} mel bins need at least {2 * (self.bins - 1)} samples per window, got "
                             f"{self.win_length}")


@functools.lru_cache(maxsize=8)
def mel_transform(mel: MelSettings) -> torchaudio.transforms.MelSpectrogram:
    """The transform of one setting, built once (its filter bank costs more than a short clip's spectrogram)."""
    return torchaudio.transforms.MelSpectrogram(mel.sample_rate, n_fft=mel.win_length, win_length=mel.win_length,
                                                hop_length=mel.hop_length, n_mels=mel.bins, power=1.0)


def log_mel(waveform: torch.Tensor, mel: MelSettings) -> torch.Tensor:
    """Mono waveform [samples] at mel.sample_rate -> log-mel frames [1 + samples // hop, bins]."""
    return mel_transform(mel)(waveform).clamp_min(MEL_FLOOR).log().transpose(0, 1)


def stack_steps(frames: torch.Tensor, per_step: int) -> torch.Tensor:
    """[T, F] -> [ceil(T / k), F * k]: k consecutive frames per decoder step, the last one padded with silence."""
    if per_step == 1:
        return frames
    padded = -frames.size(0) % per_step
    frames = torch.cat([frames, frames.new_full((padded, frames.size(1)), LOG_FLOOR)])
    return frames.reshape(-1, frames.size(1) * per_step)


def unstack_steps(steps: torch.Tensor, bins: int) -> torch.Tensor:
    """Inverse of stack_steps: [S, F * k] -> [S * k, F]."""
    return steps.reshape(-1, bins)


class Waveform(NamedTuple):
    """A generated waveform: mono float samples [N] in [-1, 1] and their rate (`samples, rate = out.waveform`)."""

    samples: torch.Tensor
    sample_rate: int

    @property
    def seconds(self) -> float:
        return self.samples.numel() / self.sample_rate
