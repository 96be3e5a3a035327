"""2-D position machinery shared by the image adaptors, in the model config's `image_positions` style
(ofasys_fs: row + column vectors and bucketed per-axis offsets; ofa: OFA's one vector per grid cell and exact
2-D offsets), the grid -> AdaptorOutput step, and the check of an image piece's tensor."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from ..contracts import AdaptorOutput
from ..models.config import ModelConfig
from ..models.coordinates import coordinate_code
from ..models.positions import (
    OFA_IMAGE_SPECIAL_BUCKETS,
    RelativePositionBias,
    ofa_image_bucket,
    relative_position_bucket,
)


def image_tensor(batch: dict[str, torch.Tensor], owner: str) -> torch.Tensor:
    """The piece's "image" [B, 3, H, W], or a KeyError/ValueError naming `owner` and what was expected."""
    image = batch.get("image")
    if image is None:
        raise KeyError(f'{owner}: the {batch.get("modality", "?")} piece has no "image" tensor (keys: {sorted(batch)})')
    if image.dim() != 4 or image.size(1) != 3:
        raise ValueError(f"{owner}: expected images [batch, 3, H, W], got {list(image.shape)}")
    return image


def check_grid(rows: int, cols: int, max_grid: int, owner: str) -> None:
    if max(rows, cols) > max_grid:
        raise ValueError(f"{owner}: a {rows}x{cols} feature grid exceeds the {max_grid}x{max_grid} position tables; "
                         f"use images of at most image_size pixels (model config)")


class GridPositions(nn.Module):
    """Positions of a rows x cols feature grid read row by row: layer-normed row + column vectors (the
    decoupled absolute bias) and a per-layer relative bias over (row distance, column distance) buckets."""

    def __init__(self, max_grid: int, model_cfg: ModelConfig, owner: str):
        super().__init__()
        dim = model_cfg.embed_dim
        self.max_grid, self.owner = max_grid, owner
        self.num_buckets, self.max_distance = model_cfg.image_rel_buckets, model_cfg.image_rel_max_distance
        self.row_positions = nn.Embedding(max_grid, dim)
        self.col_positions = nn.Embedding(max_grid, dim)
        # columns (x) in the first half of the dimensions, rows (y) in the second, in the code of the <bin>s
        half = dim // 2
        centres = (torch.arange(max_grid) + 0.5) / max_grid
        with torch.no_grad():
            self.col_positions.weight.zero_()
            self.row_positions.weight.zero_()
            self.col_positions.weight[:, :half] = coordinate_code(centres, half)
            self.row_positions.weight[:, half:2 * half] = coordinate_code(centres, half)
        self.position_norm = nn.LayerNorm(dim)
        self.relative = RelativePositionBias(self.num_buckets**2, model_cfg.encoder_layers, model_cfg.attention_heads)

    def forward(self, rows: int, cols: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (position vectors [1, rows * cols, D], relative bias [layers, 1, heads, T, T])."""
        check_grid(rows, cols, self.max_grid, self.owner)
        row_ids = torch.arange(rows, device=device).repeat_interleave(cols)
        col_ids = torch.arange(cols, device=device).repeat(rows)
        buckets = self.axis_buckets(row_ids) * self.num_buckets + self.axis_buckets(col_ids)
        vectors = self.position_norm(self.row_positions(row_ids) + self.col_positions(col_ids))
        return vectors[None], self.relative(buckets)

    def axis_buckets(self, ids: torch.Tensor) -> torch.Tensor:
        """Per-axis coordinates [N] -> relative buckets [N, N] along that axis."""
        return relative_position_bucket(ids[None, :] - ids[:, None], self.num_buckets, self.max_distance)


class CellPositions(nn.Module):
    """OFA's image positions: a grid of up to `grid` x `grid` cells (image_rel_buckets) with one layer-normed
    vector per cell (table row `row * grid + col + 1`; row 0 is OFA's unused "no position" slot) and a
    per-layer relative bias per exact (row, column) offset."""

    def __init__(self, model_cfg: ModelConfig, owner: str):
        super().__init__()
        dim, self.grid, self.owner = model_cfg.embed_dim, model_cfg.image_rel_buckets, owner
        self.table = nn.Embedding(self.grid**2 + 1, dim)
        nn.init.normal_(self.table.weight, std=dim**-0.5)
        self.position_norm = nn.LayerNorm(dim)
        offsets = (2 * self.grid - 1) ** 2 + OFA_IMAGE_SPECIAL_BUCKETS
        self.relative = RelativePositionBias(offsets, model_cfg.encoder_layers, model_cfg.attention_heads)

    def forward(self, rows: int, cols: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (position vectors [1, rows * cols, D], relative bias [layers, 1, heads, T, T])."""
        check_grid(rows, cols, self.grid, self.owner)
        cells = (torch.arange(rows, device=device)[:, None] * self.grid + torch.arange(cols, device=device) + 1)
        vectors = self.position_norm(self.table(cells.flatten()))
        return vectors[None], self.relative(ofa_image_bucket(rows, cols, self.grid, device))


def grid_positions(max_grid: int, model_cfg: ModelConfig, owner: str) -> Union[GridPositions, CellPositions]:
    """The position module of the model config's image_positions style (`max_grid`: the ofasys_fs tables' side)."""
    if model_cfg.image_positions == "ofa":
        return CellPositions(model_cfg, owner)
    return GridPositions(max_grid, model_cfg, owner)


def grid_output(features: torch.Tensor, layer_norm: nn.LayerNorm, positions: nn.Module,
                type_embedding: Optional[torch.Tensor] = None) -> AdaptorOutput:
    """Feature map [B, D, rows, cols] -> AdaptorOutput with one layer-normed token per cell, read row by row
    (the type vector, when given, is added before the norm)."""
    batch_size, _, rows, cols = features.shape
    position_embeddings, rel_bias = positions(rows, cols, features.device)
    tokens = features.flatten(2).transpose(1, 2)
    return AdaptorOutput(
        embeddings=layer_norm(tokens if type_embedding is None else tokens + type_embedding),
        padding_mask=torch.zeros(batch_size, rows * cols, dtype=torch.bool, device=features.device),
        rel_bias=rel_bias,
        position_embeddings=position_embeddings,
        grid=(rows, cols),
    )
