"""Adaptor "audio_fbank": fbank frames -> two stride-2 Conv1d + GELU (4x fewer steps) -> embeddings with
1-D positions (100 frames/s -> 25 tokens/s; 30 s -> 750 tokens)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..contracts import Adaptor, AdaptorOutput
from ..models.config import ModelConfig
from ..models.positions import SequencePositions
from ..registry import register_adaptor

KERNEL_SIZE = 5  # per conv, padding KERNEL_SIZE // 2 and stride 2: each conv maps T steps to ceil(T / 2)
NUM_CONVS = 2


def conv_output_length(lengths):
    """Steps (int or LongTensor) after one padded stride-2 conv: ceil(T / 2)."""
    return (lengths + 1) // 2


def subsampled_length(lengths):
    """Steps (int or LongTensor) after the conv stack: ceil(T / 4), the audio piece's encoder length."""
    for _ in range(NUM_CONVS):
        lengths = conv_output_length(lengths)
    return lengths


def valid_steps(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """[B] lengths -> BoolTensor [B, steps], True on each row's first `length` steps."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


@register_adaptor("audio_fbank")
class AudioFbankAdaptor(Adaptor):
    """fbank [B, T, F] (F = model_cfg.audio_feature_dim) -> [B, ceil(T / 4), D]: Conv1d(F -> D) and
    Conv1d(D -> D), kernel 5, stride 2, GELU, then a linear projection and a layer norm; positions and a
    bucketed 1-D relative bias as text (table of audio_max_positions).

    Conv1d over time (fairseq S2T style) rather than Conv2d: cost linear in T, and stacked frames
    (n_frames_per_step) only widen the input channels. Each conv's input is zeroed beyond each row's
    length, so a padded row's valid outputs equal the row's outputs alone.
    """

    def __init__(self, model_cfg: ModelConfig, embed_tokens: nn.Embedding):
        super().__init__()
        dim = model_cfg.embed_dim
        self.feature_dim = model_cfg.audio_feature_dim
        channels = [self.feature_dim] + [dim] * NUM_CONVS
        self.convs = nn.ModuleList(
            nn.Conv1d(channels[i], channels[i + 1], KERNEL_SIZE, stride=2, padding=KERNEL_SIZE // 2)
            for i in range(NUM_CONVS)
        )
        self.proj = nn.Linear(dim, dim)
        self.layer_norm = nn.LayerNorm(dim)
        self.positions = SequencePositions(
            model_cfg.audio_max_positions, model_cfg, model_cfg.encoder_layers,
            owner="audio_fbank adaptor (audio_max_positions, after 4x subsampling)",
        )

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        fbank = self.required(batch, "fbank")
        if fbank.dim() != 3 or fbank.size(-1) != self.feature_dim or fbank.size(1) == 0:
            raise ValueError(
                f"audio_fbank adaptor: expected fbank [batch, frames >= 1, {self.feature_dim}], "
                f"got {list(fbank.shape)}; "
                f"model config audio_feature_dim must be 80 x the audio slot's n_frames_per_step"
            )
        return fbank

    @staticmethod
    def lengths(batch: dict[str, torch.Tensor], fbank: torch.Tensor) -> torch.Tensor:
        """Valid frames per row, from fbank_lengths, else the padding mask, else all frames."""
        batch_size, steps = fbank.shape[:2]
        lengths = batch.get("fbank_lengths")
        if lengths is None and batch.get("padding_mask") is not None:
            lengths = (~batch["padding_mask"]).sum(1)
        if lengths is None:
            return torch.full((batch_size,), steps, dtype=torch.long, device=fbank.device)
        lengths = lengths.to(fbank.device)
        if lengths.shape != (batch_size,) or bool((lengths < 1).any()) or bool((lengths > steps).any()):
            raise ValueError(f"audio_fbank adaptor: fbank_lengths must be [{batch_size}] values in 1..{steps} "
                             f"(the fbank's frames), got {lengths.tolist()}")
        return lengths

    def forward(self, batch: dict[str, torch.Tensor]) -> AdaptorOutput:
        fbank = self.features(batch)
        lengths = self.lengths(batch, fbank)
        x = fbank.transpose(1, 2)  # [B, F, T]
        for conv in self.convs:
            x = F.gelu(conv(x * valid_steps(lengths, x.size(-1))[:, None, :].to(x.dtype)))
            lengths = conv_output_length(lengths)
        x = self.layer_norm(self.proj(x.transpose(1, 2)))
        positions = self.positions.positions(x.size(1), x.device)
        return AdaptorOutput(
            embeddings=x,
            padding_mask=~valid_steps(lengths, x.size(1)),
            positions=positions[None].expand(x.size(0), -1),
            rel_bias=self.positions.relative_bias(positions, positions),
            position_embeddings=self.positions.embeddings(positions)[None],
        )
