"""DataConfig: every setting preprocessors read, in one place; stored in checkpoints so that inference
preprocesses exactly as training did (docs/design.md, "Checkpoints")."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Union

from ..errors import ConfigError
from ..options import at_least, check_fields, option

MEL_FIELDS = ("mel_bins", "mel_frames_per_step", "mel_hop_length", "mel_win_length")  # ModelConfig's, copied here
PerChannel = Union[float, tuple[float, float, float]]


def per_channel(value: PerChannel) -> tuple[float, float, float]:
    """One number for all channels, or three (R, G, B)."""
    return (float(value),) * 3 if isinstance(value, (int, float)) else tuple(float(v) for v in value)


def finite_channels(value: PerChannel) -> None:
    if not all(math.isfinite(v) for v in per_channel(value)):
        raise ValueError("must be finite")


def positive_channels(value: PerChannel) -> None:
    finite_channels(value)
    if min(per_channel(value)) <= 0:
        raise ValueError("must be positive")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What a row's preprocessing depends on besides the instruction: image geometry and normalisation, audio
    rate, video frames, and the length limits of the model's position tables."""

    image_size: int = option(64, "image side in pixels (from the model's image adaptor)", check=at_least(1))
    image_mean: PerChannel = option((0.5, 0.5, 0.5), "per-channel mean subtracted from pixels in [0, 1] (OFA: 0.5)",
                                    check=finite_channels)
    image_std: PerChannel = option((0.5, 0.5, 0.5), "per-channel std pixels are divided by (OFA: 0.5)",
                                   check=positive_channels)
    image_augment: bool = option(False, "train split: random resized crop and horizontal flip")
    sample_rate: int = option(16000, "audio is resampled to this rate (Hz)", check=at_least(1))
    mel_bins: int = option(80, "audio_mel targets: mel bins (from the model)", check=at_least(1))
    mel_frames_per_step: int = option(1, "audio_mel targets: frames per decoder step (from the model)",
                                      check=at_least(1))
    mel_hop_length: int = option(160, "audio_mel targets: hop in samples (from the model)", check=at_least(1))
    mel_win_length: int = option(400, "audio_mel targets: FFT window in samples (from the model)", check=at_least(2))
    video_frames: int = option(8, "frames sampled per video (a slot's num_frames overrides it)", check=at_least(1))
    max_source_positions: int = option(1024, "encoder positions per sample", check=at_least(1))
    max_target_positions: int = option(1024, "decoder positions per sample", check=at_least(1))
    truncate_long: bool = option(False, "truncate groups longer than the positions instead of failing")

    def __post_init__(self) -> None:
        check_fields(self, "data config")
        object.__setattr__(self, "image_mean", per_channel(self.image_mean))
        object.__setattr__(self, "image_std", per_channel(self.image_std))

    @classmethod
    def for_model(cls, model_cfg: Any, truncate_long: bool = False) -> "DataConfig":
        """The preprocessing a model expects: its image side, mel frames and position tables."""
        mel = {name: getattr(model_cfg, name) for name in MEL_FIELDS}
        return cls(image_size=model_cfg.image_size, max_source_positions=model_cfg.max_source_positions,
                   max_target_positions=model_cfg.max_target_positions, truncate_long=truncate_long, **mel)

    def to_dict(self) -> dict:
        """Plain values for a checkpoint."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, stored: dict) -> "DataConfig":
        """Inverse of `to_dict`; an unknown key is an error (a checkpoint of a newer version, or edited)."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(stored) - known)
        if unknown:
            raise ConfigError(f"data config: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in stored.items()})
