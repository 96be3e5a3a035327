"""The "audio_mel" preprocessor: an AUDIO output slot (text-to-speech). Targets are log-mel frames stacked
`n_frames_per_step` per decoder step; generated frames go back to a waveform through a vocoder
(docs/design.md §17)."""
from __future__ import annotations

import math
from typing import Any

import torch

from ..contracts import Preprocessor, SampleContext
from ..media import MediaError, load_audio
from ..mel import LOG_FLOOR, MelSettings, Waveform, log_mel, stack_steps, unstack_steps
from ..registry import build_vocoder, register_preprocessor
from .audio import _describe
from .config import DataConfig

VOCODER_OPTIONS = ("vocoder", "vocoder_path")


def pad_frames(frames: list[torch.Tensor], value: float) -> dict[str, torch.Tensor]:
    """[T_i, F] tensors -> frames [B, T, F] padded with `value`, frame_lengths [B], padding_mask [B, T] (True = pad)."""
    lengths = torch.tensor([f.size(0) for f in frames], dtype=torch.long)
    batch = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True, padding_value=value)
    padding_mask = torch.arange(batch.size(1))[None, :] >= lengths[:, None]
    return {"frames": batch, "frame_lengths": lengths, "padding_mask": padding_mask}


TRIM_MARGIN_SECONDS = 0.05  # kept around the loud frames: weak onsets ("f", "t") sit near the threshold


def trimmed(mel: torch.Tensor, top_db: float, margin: int) -> torch.Tensor:
    """Log-mel frames [T, bins] without the leading and trailing frames whose loudest bin is more than `top_db` dB
    below the loudest frame's (librosa.effects.trim's rule on the mel frames), but `margin` frames each side."""
    loudness = mel.max(dim=1).values * (20 / math.log(10))
    loud = torch.nonzero(loudness >= loudness.max() - top_db).flatten()
    return mel[max(int(loud[0]) - margin, 0):int(loud[-1]) + 1 + margin]


@register_preprocessor("audio_mel")
class AudioMelPreprocessor(Preprocessor):
    """AUDIO output -> {"frames": [steps, bins x k]} of natural-log mel magnitudes (mel settings: the model's,
    through DataConfig). Stereo is averaged, other rates resampled, clipped audio kept as it is; with the slot's
    trim_db leading and trailing silence is cut (a target that opens with silence teaches a decoder, whose first
    input is a silent frame, that silence follows silence; docs/multitask.md). Silent audio, audio shorter than
    one window and targets longer than max_target_positions steps are errors."""

    modality = "AUDIO"
    continuous = True
    generator = "autoregressive_frames"
    criterion = "frame_regression"
    output_options = VOCODER_OPTIONS

    def __init__(self, slot: Any, vocab: Any, data_cfg: DataConfig):
        super().__init__(slot, vocab, data_cfg)
        self.mel = MelSettings.of(data_cfg)
        per_step = slot.attrs.get("n_frames_per_step")
        if per_step is not None and per_step != self.mel.frames_per_step:
            raise ValueError(f"n_frames_per_step={per_step} of the slot differs from the model's mel_frames_per_step="
                             f"{self.mel.frames_per_step}; set the model's (--mel-frames-per-step) or drop the attribute")
        self.mel.check()
        self.trim_db = slot.attrs["trim_db"]
        self.trim_margin = round(TRIM_MARGIN_SECONDS * self.mel.sample_rate / self.mel.hop_length)
        self.max_steps = data_cfg.max_target_positions
        self.truncate_long = data_cfg.truncate_long
        self.vocoders: dict = {}

    def __call__(self, value: Any, ctx: SampleContext) -> dict[str, torch.Tensor]:
        waveform = load_audio(value, ctx.base_dir, target_rate=self.mel.sample_rate)
        source = _describe(value)
        if waveform.numel() < self.mel.win_length:
            raise MediaError(f"{source} has {waveform.numel()} samples at {self.mel.sample_rate} Hz; expected at "
                             f"least one mel window ({self.mel.win_length} samples)", source=source)
        if not bool(waveform.abs().max() > 0):
            raise MediaError(f"{source} is silent (every sample is 0); a speech target needs sound", source=source)
        mel = log_mel(waveform, self.mel)
        if self.trim_db:
            mel = trimmed(mel, self.trim_db, self.trim_margin)
        frames = stack_steps(mel, self.mel.frames_per_step)
        if frames.size(0) > self.max_steps:
            if not self.truncate_long:
                raise ValueError(f"{source} gives {frames.size(0)} decoder steps of {self.mel.frames_per_step} mel "
                                 f"frames, more than max_target_positions={self.max_steps}; raise it, raise "
                                 f"mel_frames_per_step, or set truncate_long to cut long targets")
            frames = frames[:self.max_steps]
        return {"frames": frames}

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """frames [B, T, F] padded with silence, frame_lengths [B], padding_mask [B, T] (True = pad)."""
        if not items:
            raise ValueError("cannot collate an empty list of AUDIO output items")
        return pad_frames([item["frames"] for item in items], LOG_FLOOR)

    def decode_features(self, frames: torch.Tensor, options: dict) -> dict[str, Any]:
        """Generated steps [S, bins x k] -> {"frames": log-mel [S k, bins], "waveform": Waveform} via the vocoder
        named by the `vocoder` option (default griffin_lim; `vocoder_path` for torchscript)."""
        mel = unstack_steps(frames.float().cpu(), self.mel.bins)
        if not bool(torch.isfinite(mel).all()):
            raise ValueError("the generated mel frames hold NaN or infinite values (a diverged model?); no waveform "
                             "is made from them")
        key = (options.get("vocoder") or "griffin_lim", options.get("vocoder_path"))
        if key not in self.vocoders:
            extra = {"path": key[1]} if key[1] is not None else {}
            self.vocoders[key] = build_vocoder({"name": key[0], **extra}, self.mel)
        samples = self.vocoders[key](mel) if mel.size(0) else torch.zeros(0)
        return {"frames": mel, "waveform": Waveform(samples, self.mel.sample_rate)}
