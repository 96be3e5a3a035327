"""Adaptor "motion_6d" (encoder input): motion_6d frames -> a frame MLP -> one embedding per frame, with learned
1-D positions and a bucketed relative bias as text (OFASys's motion adaptor, input side)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..contracts import Adaptor, AdaptorOutput
from ..errors import ConfigError
from ..models.config import ModelConfig
from ..models.positions import SequencePositions
from ..registry import register_adaptor


def padded_frames(frames: torch.Tensor, feature_dim: int, adaptor: str) -> torch.Tensor:
    """Frames [B, T, D <= feature_dim] zero-padded to feature_dim features, so that one model serves skeletons of
    any size up to it; a larger skeleton is a config error (the model's motion_feature_dim)."""
    if frames.dim() != 3 or frames.size(1) == 0 or frames.size(2) > feature_dim:
        raise ConfigError(f"{adaptor} adaptor: expected frames [batch, frames >= 1, features <= {feature_dim}], got "
                          f"{list(frames.shape)}; a skeleton of J joints has 6 + 6 J features: raise model config "
                          f"motion_feature_dim for larger skeletons")
    return F.pad(frames, (0, feature_dim - frames.size(2)))


@register_adaptor("motion_6d")
class Motion6dAdaptor(Adaptor):
    """frames [B, T, D] (D <= model_cfg.motion_feature_dim, zero-padded to it, so one model takes skeletons of
    different sizes) -> Linear, GELU, Linear, layer norm -> [B, T, embed_dim]; padded frames are masked."""

    def __init__(self, model_cfg: ModelConfig, embed_tokens: nn.Embedding):
        super().__init__()
        dim = model_cfg.embed_dim
        self.feature_dim = model_cfg.motion_feature_dim
        self.frame_mlp = nn.Sequential(nn.Linear(self.feature_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.layer_norm = nn.LayerNorm(dim)
        self.positions = SequencePositions(model_cfg.motion_max_frames, model_cfg, model_cfg.encoder_layers,
                                           owner="motion_6d adaptor (motion_max_frames)")

    def frames(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return padded_frames(self.required(batch, "frames"), self.feature_dim, "motion_6d")

    def forward(self, batch: dict[str, torch.Tensor]) -> AdaptorOutput:
        frames = self.frames(batch)
        embeddings = self.layer_norm(self.frame_mlp(frames))
        padding_mask = batch.get("padding_mask")
        if padding_mask is None:
            padding_mask = torch.zeros(frames.shape[:2], dtype=torch.bool, device=frames.device)
        positions = self.positions.positions(frames.size(1), frames.device)
        return AdaptorOutput(
            embeddings=embeddings,
            padding_mask=padding_mask.to(frames.device),
            positions=positions[None].expand(frames.size(0), -1),
            rel_bias=self.positions.relative_bias(positions, positions),
            position_embeddings=self.positions.embeddings(positions)[None],
        )
