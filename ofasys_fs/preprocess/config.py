"""DataConfig: every setting preprocessors read, in one place; stored in checkpoints so that inference
preprocesses exactly as training did (docs/design.md, "Checkpoints")."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Union

from ..errors import ConfigError
from ..options import at_least, check_fields, one_of, option, positive

MEL_FIELDS = ("mel_bins", "mel_frames_per_step", "mel_hop_length", "mel_win_length")  # ModelConfig's, copied here
PerChannel = Union[float, tuple[float, float, float]]
BinStatistics = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std) per fbank bin


def per_channel(value: PerChannel) -> tuple[float, float, float]:
    """One number for all channels, or three (R, G, B)."""
    return (float(value),) * 3 if isinstance(value, (int, float)) else tuple(float(v) for v in value)


def finite_channels(value: PerChannel) -> None:
    if not all(math.isfinite(v) for v in per_channel(value)):
        raise ValueError("must be finite")


def bin_statistics(value: Optional[BinStatistics]) -> None:
    """None, or (mean, std): two equally long lists of finite numbers, every std positive."""
    if value is None:
        return
    if len(value) != 2 or len(value[0]) != len(value[1]) or not len(value[0]):
        raise ValueError("must be (mean, std): two equally long, non-empty lists of numbers, one per fbank bin")
    if not all(math.isfinite(v) for part in value for v in part) or min(value[1]) <= 0:
        raise ValueError("must be finite, with every std positive")


def motion_statistics(value: Optional[dict]) -> None:
    """None, or MotionStatistics.to_dict(): the BVH header and one finite mean and positive std per feature."""
    if value is None:
        return
    if not {"hierarchy", "mean", "std"} <= set(value) or not isinstance(value["hierarchy"], str):
        raise ValueError("must hold 'hierarchy' (the BVH header text), 'mean' and 'std' (MotionStatistics.to_dict)")
    mean, std = value["mean"], value["std"]
    if len(mean) != len(std) or not len(mean) or not all(math.isfinite(v) for v in (*mean, *std)) or min(std) <= 0:
        raise ValueError("mean and std must be equally long lists of finite numbers, every std positive")


def positive_channels(value: PerChannel) -> None:
    finite_channels(value)
    if min(per_channel(value)) <= 0:
        raise ValueError("must be positive")


def plain_lists(value: Any) -> Any:
    """Tuples (nested too) as lists: what a checkpoint's plain config holds."""
    return [plain_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What a row's preprocessing depends on besides the instruction: image geometry and normalisation, audio
    rate, video frames, motion frame rate, and the length limits of the model's position tables."""

    image_size: int = option(64, "image side in pixels (from the model's image adaptor)", check=at_least(1))
    image_mean: PerChannel = option((0.5, 0.5, 0.5), "per-channel mean subtracted from pixels in [0, 1] (OFA: 0.5)",
                                    check=finite_channels)
    image_std: PerChannel = option((0.5, 0.5, 0.5), "per-channel std pixels are divided by (OFA: 0.5)",
                                   check=positive_channels)
    image_side_multiple: int = option(1, "image sides must be multiples of this (the image_patch adaptor's "
                                         "patch_size; from the model)", check=at_least(1))
    image_resize: str = option("torch", "square resize filter: torch (antialiased bicubic) or pil (PIL's bicubic, "
                                        "OFA's; from the model)", check=one_of("torch", "pil"))
    image_augment: bool = option(False, "train split: random resized crop and horizontal flip")
    sample_rate: int = option(16000, "audio is resampled to this rate (Hz)", check=at_least(1))
    audio_cmvn: Optional[BinStatistics] = option(
        None, "global CMVN of AUDIO slots: per-bin fbank (mean, std) over the training split, computed by training "
              "(data/audio_statistics.py); None: log-mel features as they are", check=bin_statistics)
    mel_bins: int = option(80, "audio_mel targets: mel bins (from the model)", check=at_least(1))
    mel_frames_per_step: int = option(1, "audio_mel targets: frames per decoder step (from the model)",
                                      check=at_least(1))
    mel_hop_length: int = option(160, "audio_mel targets: hop in samples (from the model)", check=at_least(1))
    mel_win_length: int = option(400, "audio_mel targets: FFT window in samples (from the model)", check=at_least(2))
    video_frames: int = option(8, "frames sampled per video (a slot's num_frames overrides it)", check=at_least(1))
    motion_fps: float = option(30.0, "motion clips are resampled to this many frames per second", check=positive)
    motion_statistics: Optional[dict] = option(
        None, "normalisation of MOTION slots and the skeleton of MOTION outputs: MotionStatistics.to_dict() over the "
              "training split, computed by training (data/motion_statistics.py); None: each clip's data-free default",
        check=motion_statistics)
    max_source_positions: int = option(1024, "encoder positions per sample", check=at_least(1))
    max_target_positions: int = option(1024, "decoder positions per sample", check=at_least(1))
    truncate_long: bool = option(False, "truncate groups longer than the positions instead of failing")
    image_tokenizers: dict[str, str] = option({}, "image_code slots: tokenizer as the instruction names it ('': the "
                                                  "model's image_tokenizer) -> content hash (set by training)")

    def __post_init__(self) -> None:
        check_fields(self, "data config")
        object.__setattr__(self, "image_mean", per_channel(self.image_mean))
        object.__setattr__(self, "image_std", per_channel(self.image_std))
        if self.audio_cmvn is not None:
            object.__setattr__(self, "audio_cmvn", tuple(tuple(float(v) for v in part) for part in self.audio_cmvn))

    @classmethod
    def for_model(cls, model_cfg: Any, truncate_long: bool = False,
                  image_tokenizers: Optional[dict] = None) -> "DataConfig":
        """The preprocessing a model expects: its image side, patch and resize filter, mel frames, position tables and
        image tokenizers."""
        mel = {name: getattr(model_cfg, name) for name in MEL_FIELDS}
        multiple = model_cfg.patch_size if model_cfg.image_adaptor == "image_patch" else 1
        return cls(image_size=model_cfg.image_size, image_side_multiple=multiple, image_resize=model_cfg.image_resize,
                   max_source_positions=model_cfg.max_source_positions,
                   max_target_positions=model_cfg.max_target_positions, truncate_long=truncate_long,
                   image_tokenizers=dict(image_tokenizers or {}), **mel)

    def to_dict(self) -> dict:
        """Plain values for a checkpoint."""
        return {key: plain_lists(value) for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, stored: dict) -> "DataConfig":
        """Inverse of `to_dict`; an unknown key is an error (a checkpoint of a newer version, or edited)."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(stored) - known)
        if unknown:
            raise ConfigError(f"data config: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in stored.items()})
