"""Adaptor "image_patch": an image -> patch embeddings (ViT-style patchify) with 2-D positions."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..contracts import Adaptor, AdaptorOutput
from ..models.config import ModelConfig
from ..models.layers import type_vector
from ..models.task_batch_norm import TaskBatchNorm2d
from ..registry import register_adaptor
from .image_grid import grid_output, grid_positions, image_tensor


@register_adaptor("image_patch")
class ImagePatchAdaptor(Adaptor):
    """Image [B, 3, H, W] -> one embedding per patch_size x patch_size patch (a strided conv, or with
    patch_stem=conv a convolutional stem, + layer norm); row + column position vectors and a 2-D bucketed relative
    bias table per encoder layer."""

    def __init__(self, model_cfg: ModelConfig, embed_tokens: nn.Embedding):
        super().__init__()
        dim = model_cfg.embed_dim
        self.patch_size, self.image_size = model_cfg.patch_size, model_cfg.image_size
        max_grid = model_cfg.image_size // model_cfg.patch_size
        if max_grid < 1:
            raise ValueError(
                f"image_patch adaptor: image_size={model_cfg.image_size} is smaller than patch_size={model_cfg.patch_size}"
            )
        if model_cfg.patch_stem == "conv":
            self.proj = ConvStem(dim, self.patch_size)
        else:
            self.proj = nn.Conv2d(3, dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.layer_norm = nn.LayerNorm(dim)
        self.positions = grid_positions(max_grid, model_cfg, owner="image_patch adaptor")
        self.type_embedding = type_vector(dim) if model_cfg.type_embedding else None

    def check_image(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        image = image_tensor(batch, "image_patch adaptor")
        height, width = image.shape[-2:]
        if height % self.patch_size or width % self.patch_size or max(height, width) > self.image_size:
            raise ValueError(
                f"image_patch adaptor: got {height}x{width} px images; expected sides that are multiples of "
                f"patch_size={self.patch_size} and at most image_size={self.image_size} (model config)"
            )
        return image

    def forward(self, batch: dict) -> AdaptorOutput:
        image = self.check_image(batch)
        patches = self.proj(image, batch.get("task")) if isinstance(self.proj, ConvStem) else self.proj(image)
        return grid_output(patches, self.layer_norm, self.positions, self.type_embedding)  # patches [B, D, rows, cols]


STEM_WIDTH = 32  # channels of the stem's first convolution; each further one doubles them, up to the model width


class ConvStem(nn.Module):
    """3x3 stride-2 convolutions (BatchNorm with statistics per task, ReLU), one per halving of the image down to
    the patch grid, then a 1x1 projection to the model width: the convolutional stem of Xiao et al. 2021 ("Early
    convolutions help transformers see better"), which sees edges inside a patch that a single linear patchify
    learns slowly."""

    def __init__(self, dim: int, patch_size: int):
        super().__init__()
        halvings = patch_size.bit_length() - 1
        if patch_size < 2 or 1 << halvings != patch_size:
            raise ValueError(f"image_patch adaptor: patch_stem=conv needs a power-of-two patch_size >= 2, got "
                             f"{patch_size}")
        widths = [min(STEM_WIDTH << step, dim) for step in range(halvings)]
        self.convs = nn.ModuleList(nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False)
                                   for channels, width in zip([3] + widths, widths))
        self.norms = nn.ModuleList(TaskBatchNorm2d(width) for width in widths)
        self.out = nn.Conv2d(widths[-1], dim, kernel_size=1)

    def forward(self, image: torch.Tensor, task: Optional[str] = None) -> torch.Tensor:
        """image [B, 3, H, W] of one task's rows (None: statistics of all tasks) -> [B, dim, H / patch, W / patch]"""
        x = image
        for conv, norm in zip(self.convs, self.norms):
            x = torch.relu(norm(conv(x), task))
        return self.out(x)
