"""Adaptor "video_frames": N frames, each through the arch's image adaptor, plus a learned frame embedding;
a factorised space-time relative bias (frame distance + spatial offset)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..contracts import Adaptor, AdaptorOutput
from ..models.config import ModelConfig
from ..models.positions import SequencePositions
from ..registry import build_adaptor, register_adaptor


@register_adaptor("video_frames")
class VideoFramesAdaptor(Adaptor):
    """frames [B, N, 3, H, W] -> [B, N * G, D] tokens, frame by frame (G = the image adaptor's tokens per frame).

    Each frame goes through its own instance of `model_cfg.image_adaptor` (image_patch or image_resnet;
    not shared with the model's image adaptor). The frame embedding (a learned, layer-normed vector per
    frame index) is added to that frame's token embeddings, so frame identity reaches the decoder through
    the values; the position vectors are the image's row/column vectors. Attention bias between two tokens
    = temporal bias of their bucketed frame distance + the image's spatial bias of their (row, column)
    offset, for every pair of frames (same location in neighbouring frames is "near").
    """

    def __init__(self, model_cfg: ModelConfig, embed_tokens: nn.Embedding):
        super().__init__()
        if model_cfg.image_adaptor == "video_frames":
            raise ValueError(
                'video_frames adaptor: model config image_adaptor must be an image adaptor, not "video_frames"')
        self.image = build_adaptor(model_cfg.image_adaptor, model_cfg, embed_tokens)
        self.frames = SequencePositions(
            model_cfg.video_max_frames, model_cfg, model_cfg.encoder_layers,
            owner="video_frames adaptor (video_max_frames)",
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> AdaptorOutput:
        frames = batch.get("frames")
        if frames is None:
            raise KeyError(f'video_frames adaptor: the {batch.get("modality", "?")} piece has no "frames" tensor '
                           f"(keys: {sorted(batch)})")
        if frames.dim() != 5 or frames.size(2) != 3:
            raise ValueError(
                f"video_frames adaptor: expected frames [batch, frames, 3, H, W], got {list(frames.shape)}")
        batch_size, num_frames = frames.shape[:2]
        frame_ids = self.frames.positions(num_frames, frames.device)
        per_frame = self.image({"modality": "IMAGE", "image": frames.flatten(0, 1), "task": batch.get("task")})
        grid, dim = per_frame.embeddings.shape[1:]
        embeddings = per_frame.embeddings.view(batch_size, num_frames, grid, dim)
        embeddings = embeddings + self.frames.embeddings(frame_ids)[None, :, None, :]
        return AdaptorOutput(
            embeddings=embeddings.reshape(batch_size, num_frames * grid, dim),
            padding_mask=per_frame.padding_mask.reshape(batch_size, num_frames * grid),
            positions=frame_ids.repeat_interleave(grid)[None].expand(batch_size, -1),
            rel_bias=self.space_time_bias(per_frame.rel_bias, frame_ids, grid),
            position_embeddings=self.tile_positions(per_frame.position_embeddings, batch_size, num_frames),
        )

    def space_time_bias(self, spatial: Optional[torch.Tensor], frame_ids: torch.Tensor, grid: int) -> torch.Tensor:
        """Temporal [layers, 1, heads, N, N] expanded over each frame's G tokens, plus the per-frame spatial
        bias [.., 1, heads, G, G] tiled over all N x N frame pairs -> [layers, 1, heads, N * G, N * G]."""
        temporal = self.frames.relative_bias(frame_ids, frame_ids)
        temporal = temporal.repeat_interleave(grid, dim=-1).repeat_interleave(grid, dim=-2)
        if spatial is None:
            return temporal
        if spatial.size(-4) != 1:
            raise ValueError("video_frames adaptor: the image adaptor's rel_bias must be shared by the batch "
                             f"([..., 1, heads, G, G]), got {list(spatial.shape)}")
        num_frames = len(frame_ids)
        return temporal + spatial.repeat(*(1,) * (spatial.dim() - 2), num_frames, num_frames)

    @staticmethod
    def tile_positions(spatial: Optional[torch.Tensor], batch_size: int, num_frames: int) -> Optional[torch.Tensor]:
        """The image's position vectors ([1, G, D] or per frame [B * N, G, D]) repeated for every frame."""
        if spatial is None:
            return None
        if spatial.size(0) == 1:
            return spatial.repeat(1, num_frames, 1)
        return spatial.reshape(batch_size, -1, spatial.size(-1))
