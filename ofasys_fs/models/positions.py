"""Position machinery of the generalist model (docs/model.md, "Positions and biases"): the decoupled
absolute-position bias, 1-D position tables with a bucketed relative bias per layer, and the bucket
functions of both position styles (`ModelConfig.text_positions` / `image_positions`: "ofasys_fs" or "ofa").
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import ModelConfig

OFA_EXTRA_POSITION_ROWS = 2  # OFA's 1-D tables keep fairseq's two offset rows (max_positions + 2, never read)
OFA_IMAGE_SPECIAL_BUCKETS = 3  # OFA's 2-D table ends with 3 rows for a "no position" slot, unused by images


def decoupled_position_bias(query_positions: torch.Tensor, key_positions: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Projected position vectors [B|1, Tq, D] x [B|1, Tk, D] -> per-head bias [B|1, H, Tq, Tk].

    TUPE/OFA: positions never enter the token values; their own query/key dot product, scaled by
    1/sqrt(2 * head_dim), is added to the attention logits of every layer.
    """
    batch_q, length_q, dim = query_positions.shape
    head_dim = dim // num_heads
    q = query_positions.view(batch_q, length_q, num_heads, head_dim).transpose(1, 2)
    k = key_positions.view(key_positions.size(0), key_positions.size(1), num_heads, head_dim).transpose(1, 2)
    return torch.matmul(q, k.transpose(-1, -2)) * (2 * head_dim) ** -0.5


def positions_clamped(vectors: torch.Tensor, known: int) -> torch.Tensor:
    """Position vectors [B, S, D] with every position from `known` on replaced by the one at known - 1 (as far
    as training reached); unchanged when `known` is 0 (not recorded) or covers S."""
    if not 0 < known < vectors.size(1):
        return vectors
    last = vectors[:, known - 1:known].expand(-1, vectors.size(1) - known, -1)
    return torch.cat([vectors[:, :known], last], dim=1)


def relative_position_bucket(relative: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Signed distances (key - query) -> bucket ids in [0, num_buckets).

    Half the buckets per sign; small distances get one bucket each, larger ones log-spaced buckets up
    to `max_distance`, beyond which they share the last bucket (T5-style).
    """
    half = num_buckets // 2
    exact = half // 2
    distance = relative.abs()
    log_ratio = torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (half - exact)).long()).clamp(max=half - 1)
    bucket = torch.where(distance < exact, distance, far)
    return bucket + (relative > 0).long() * half


def ofa_relative_bucket(relative: torch.Tensor, bucket_size: int, max_distance: int) -> torch.Tensor:
    """OFA's 1-D buckets: signed distances (query - key) -> ids in [0, 2 * bucket_size - 1).

    Distances up to bucket_size / 2 keep a bucket each; longer ones share log-spaced buckets that reach the
    last one at `max_distance` (OFA: max_positions - 1), computed in float32 as OFA does so that ids match
    its stored `token_rp_bucket` tables exactly. Longer distances than OFA's tables hold share the last bucket.
    """
    mid = bucket_size // 2
    distance = relative.abs().clamp(max=max_distance)
    log_ratio = torch.log(distance.clamp(min=mid).float() / mid) / math.log(max_distance / mid)
    far = torch.ceil(log_ratio * (mid - 1)).long() + mid
    bucket = torch.where(distance <= mid, relative, far * relative.sign())
    return bucket + bucket_size - 1


def ofa_image_bucket(rows: int, cols: int, bucket_size: int, device: torch.device) -> torch.Tensor:
    """OFA's 2-D buckets between the cells of a rows x cols grid read row by row: one id per exact (row, column)
    offset of query minus key, in [0, (2 * bucket_size - 1) ** 2)."""
    row = torch.arange(rows, device=device).repeat_interleave(cols)
    col = torch.arange(cols, device=device).repeat(rows)
    width = 2 * bucket_size - 1
    return (row[:, None] - row[None, :] + bucket_size - 1) * width + (col[:, None] - col[None, :] + bucket_size - 1)


class RelativePositionBias(nn.Module):
    """A learned bucket -> per-head bias table for each of `num_layers` layers (zero at init).

    One table of num_layers x num_heads columns: column `layer * num_heads + head`.
    """

    def __init__(self, num_buckets: int, num_layers: int, num_heads: int):
        super().__init__()
        self.num_layers, self.num_heads = num_layers, num_heads
        self.table = nn.Embedding(num_buckets, num_layers * num_heads)
        nn.init.zeros_(self.table.weight)

    def forward(self, buckets: torch.Tensor) -> torch.Tensor:
        """Bucket ids [Tq, Tk] -> biases [layers, 1, heads, Tq, Tk]."""
        length_q, length_k = buckets.shape
        bias = self.table(buckets).view(length_q, length_k, self.num_layers, self.num_heads)
        return bias.permute(2, 3, 0, 1).unsqueeze(1)


class SequencePositions(nn.Module):
    """1-D positions of a token sequence: absolute position vectors and per-layer bucketed relative bias, in
    the model config's `text_positions` style."""

    def __init__(self, max_positions: int, cfg: ModelConfig, num_layers: int, owner: str):
        super().__init__()
        self.max_positions, self.owner = max_positions, owner
        self.ofa_style = cfg.text_positions == "ofa"
        self.num_buckets, self.max_distance = cfg.text_rel_buckets, cfg.text_rel_max_distance
        rows = max_positions + OFA_EXTRA_POSITION_ROWS if self.ofa_style else max_positions
        self.table = nn.Embedding(rows, cfg.embed_dim)
        nn.init.normal_(self.table.weight, std=cfg.embed_dim**-0.5)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        table_rows = 2 * self.num_buckets - 1 if self.ofa_style else self.num_buckets
        self.relative = RelativePositionBias(table_rows, num_layers, cfg.attention_heads)

    def positions(self, length: int, device: torch.device) -> torch.Tensor:
        """0..length-1, with a clear error when the sequence is longer than the table."""
        if length > self.max_positions:
            raise ValueError(
                f"{self.owner}: a sequence of {length} tokens exceeds its {self.max_positions} positions; "
                f"shorten the input (e.g. max_length=N / --truncate-long) or raise the max positions"
            )
        return torch.arange(length, device=device)

    def embeddings(self, positions: torch.Tensor) -> torch.Tensor:
        """Position ids [T] -> normalised position vectors [T, D]."""
        return self.layer_norm(self.table(positions))

    def relative_bias(self, query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
        """Position ids [Tq], [Tk] -> biases [layers, 1, heads, Tq, Tk]."""
        if self.ofa_style:
            buckets = ofa_relative_bucket(query_positions[:, None] - key_positions[None, :], self.num_buckets,
                                          self.max_distance)
        else:
            buckets = relative_position_bucket(key_positions[None, :] - query_positions[:, None], self.num_buckets,
                                               self.max_distance)
        return self.relative(buckets)
