"""Vocoder "torchscript": a user's neural vocoder (e.g. HiFiGAN) saved with torch.jit.save, given by path. It is
called as `module(mel [1, bins, T]) -> waveform [1, samples] or [1, 1, samples]` on natural-log mel frames of the
model's mel settings (bins, rate, hop), which the module must have been trained for."""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

import torch

from ..contracts import Vocoder
from ..errors import ConfigError
from ..mel import MelSettings
from ..registry import register_vocoder


@dataclasses.dataclass
class TorchScriptVocoderConfig:
    path: Optional[str] = None  # the TorchScript file (torch.jit.save); required


@register_vocoder("torchscript", dataclass=TorchScriptVocoderConfig)
class TorchScriptVocoder(Vocoder):
    """Runs a TorchScript module on CPU. TorchScript files hold code and weights but no pickled Python objects;
    load only files you trust all the same (they run arbitrary TorchScript)."""

    def __init__(self, cfg: Optional[TorchScriptVocoderConfig], mel: MelSettings):
        path = cfg.path if cfg is not None else None
        if not path:
            raise ConfigError("vocoder torchscript needs vocoder_path=FILE (a torch.jit.save file)")
        if not os.path.isfile(path):
            raise ConfigError(f"vocoder torchscript: {path} is not a file; expected a torch.jit.save file")
        try:
            self.module = torch.jit.load(path, map_location="cpu").eval()
        except RuntimeError as err:
            raise ConfigError(f"vocoder torchscript: {path} is not a TorchScript file: {err}") from err
        self.mel, self.path = mel, path

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            waveform = self.module(mel.float().transpose(0, 1)[None])
        if waveform.dim() not in (2, 3) or waveform.size(0) != 1 or waveform.dim() == 3 and waveform.size(1) != 1:
            raise ValueError(f"vocoder torchscript {self.path}: expected a waveform [1, samples] or [1, 1, samples], "
                             f"got {list(waveform.shape)}")
        return waveform.reshape(-1).clamp(-1.0, 1.0)
