"""Adaptor "image_patch": an image -> patch embeddings (ViT-style patchify) with 2-D positions."""
from __future__ import annotations

import torch
from torch import nn

from ..contracts import Adaptor, AdaptorOutput
from ..models.archs import ModelConfig
from ..models.layers import RelativePositionBias, relative_position_bucket
from ..registry import register_adaptor


@register_adaptor("image_patch")
class ImagePatchAdaptor(Adaptor):
    """Image [B, 3, H, W] -> one embedding per patch_size x patch_size patch (a strided conv + layer norm);
    row + column position vectors and a 2-D bucketed relative bias table per encoder layer."""

    def __init__(self, model_cfg: ModelConfig, embed_tokens: nn.Embedding):
        super().__init__()
        dim = model_cfg.embed_dim
        self.patch_size, self.image_size = model_cfg.patch_size, model_cfg.image_size
        self.max_grid = model_cfg.image_size // model_cfg.patch_size
        if self.max_grid < 1:
            raise ValueError(
                f"image_patch adaptor: image_size={model_cfg.image_size} is smaller than patch_size={model_cfg.patch_size}"
            )
        self.num_buckets, self.max_distance = model_cfg.image_rel_buckets, model_cfg.image_rel_max_distance
        self.proj = nn.Conv2d(3, dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.layer_norm = nn.LayerNorm(dim)
        self.row_positions = nn.Embedding(self.max_grid, dim)
        self.col_positions = nn.Embedding(self.max_grid, dim)
        for table in (self.row_positions, self.col_positions):
            nn.init.normal_(table.weight, std=dim**-0.5)
        self.position_norm = nn.LayerNorm(dim)
        self.relative = RelativePositionBias(
            self.num_buckets**2, model_cfg.encoder_layers, model_cfg.attention_heads
        )

    def check_image(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        image = batch.get("image")
        if image is None:
            raise KeyError(f'image_patch adaptor: the {batch.get("modality", "?")} piece has no "image" tensor '
                           f"(keys: {sorted(batch)})")
        if image.dim() != 4 or image.size(1) != 3:
            raise ValueError(f"image_patch adaptor: expected images [batch, 3, H, W], got {list(image.shape)}")
        height, width = image.shape[-2:]
        if height % self.patch_size or width % self.patch_size or max(height, width) > self.image_size:
            raise ValueError(
                f"image_patch adaptor: got {height}x{width} px images; expected sides that are multiples of "
                f"patch_size={self.patch_size} and at most image_size={self.image_size} (model config)"
            )
        return image

    def forward(self, batch: dict[str, torch.Tensor]) -> AdaptorOutput:
        patches = self.proj(self.check_image(batch))  # [B, D, rows, cols]
        batch_size, _, rows, cols = patches.shape
        row_ids = torch.arange(rows, device=patches.device).repeat_interleave(cols)
        col_ids = torch.arange(cols, device=patches.device).repeat(rows)
        buckets = (self.axis_buckets(row_ids) * self.num_buckets + self.axis_buckets(col_ids))
        return AdaptorOutput(
            embeddings=self.layer_norm(patches.flatten(2).transpose(1, 2)),
            padding_mask=torch.zeros(batch_size, rows * cols, dtype=torch.bool, device=patches.device),
            rel_bias=self.relative(buckets),
            position_embeddings=self.position_norm(self.row_positions(row_ids) + self.col_positions(col_ids))[None],
        )

    def axis_buckets(self, ids: torch.Tensor) -> torch.Tensor:
        """Per-axis coordinates [N] -> relative buckets [N, N] along that axis."""
        return relative_position_bucket(ids[None, :] - ids[:, None], self.num_buckets, self.max_distance)
