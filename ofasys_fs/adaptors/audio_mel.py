"""Output adaptor "audio_mel": log-mel steps in and out of the decoder (text-to-speech, Tacotron 2 style).

Decoder position t reads the last mel frame of step t-1 (a silent frame at t = 0) through a two-layer ReLU
prenet, and predicts step t (mel_bins x mel_frames_per_step values) and the logit that t is the last step.
Frames are handled in natural-log magnitudes (docs/design.md §17). As in Tacotron 2 the prenet drops half its
units in training and in decoding (mel_prenet_dropout): without it a model can fit the frames by copying the
previous one and then decodes near-silence for most texts (docs/multitask.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..contracts import AdaptorOutput, OutputAdaptor
from ..mel import LOG_FLOOR, MelSettings
from ..models.config import ModelConfig
from ..registry import register_adaptor

MEL_CENTER, MEL_SCALE = -5.0, 4.0  # log-mel values (about -11.5 .. 3) are modelled as (x - center) / scale


def shifted_frames(frames: torch.Tensor, bins: int) -> torch.Tensor:
    """[B, T, bins x k] steps -> [B, T, bins]: at t the last frame of step t-1, at 0 a silent frame."""
    last = frames[:, :-1, -bins:]
    return torch.cat([last.new_full((frames.size(0), 1, bins), LOG_FLOOR), last], dim=1)


@register_adaptor("audio_mel")
class AudioMelAdaptor(OutputAdaptor):
    """piece {"frames": [B, T, bins x k], "padding_mask": [B, T]} -> decoder inputs [B, T, D]; `project` ->
    {"frames": [B, T, bins x k], "stop_logits": [B, T]}. At inference the generator passes the steps generated so
    far plus one placeholder step: position t only sees the steps before it; a torch.Generator under the piece's
    "dropout_generator" draws the prenet dropout (a seeded decode), else torch's global RNG does."""

    causal = True

    def __init__(self, model_cfg: ModelConfig, embed_tokens: nn.Embedding):
        super().__init__()
        dim, self.mel = model_cfg.embed_dim, MelSettings.of(model_cfg)
        self.step_dim = self.mel.step_dim
        self.prenet = nn.ModuleList([nn.Linear(self.mel.bins, dim), nn.Linear(dim, dim)])
        self.prenet_dropout = model_cfg.mel_prenet_dropout
        self.layer_norm = nn.LayerNorm(dim)
        self.frames_out = nn.Linear(dim, self.mel.step_dim)
        self.stop_out = nn.Linear(dim, 1)

    def check(self, piece: dict) -> torch.Tensor:
        frames = piece.get("frames")
        if frames is None:
            raise KeyError(f'audio_mel adaptor: the decoder piece has no "frames" tensor (keys: {sorted(piece)})')
        if frames.dim() != 3 or frames.size(-1) != self.mel.step_dim or frames.size(1) == 0:
            raise ValueError(f"audio_mel adaptor: expected frames [batch, steps >= 1, {self.mel.step_dim}] (mel_bins "
                             f"{self.mel.bins} x mel_frames_per_step {self.mel.frames_per_step}), got "
                             f"{list(frames.shape)}; the model's mel settings must match the data's")
        return frames

    def forward(self, piece: dict) -> AdaptorOutput:
        frames = self.check(piece)
        x = (shifted_frames(frames, self.mel.bins) - MEL_CENTER) / MEL_SCALE
        for layer in self.prenet:
            x = self.drop(F.relu(layer(x)), piece.get("dropout_generator"))
        padding_mask = piece.get("padding_mask")
        if padding_mask is None:
            padding_mask = torch.zeros(frames.shape[:2], dtype=torch.bool, device=frames.device)
        return AdaptorOutput(embeddings=self.layer_norm(x), padding_mask=padding_mask)

    def drop(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Prenet dropout, on in eval mode too: decoding feeds back its own frames, training's noisy copies of them."""
        if self.prenet_dropout == 0:
            return x
        if generator is None:
            return F.dropout(x, self.prenet_dropout, training=True)
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.prenet_dropout
        return x * keep / (1 - self.prenet_dropout)

    def project(self, hidden: torch.Tensor, piece: dict) -> dict[str, torch.Tensor]:
        return {"frames": MEL_CENTER + MEL_SCALE * self.frames_out(hidden), "stop_logits": self.stop_out(hidden)[..., 0]}
