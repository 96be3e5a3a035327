"""Transformer building blocks of the generalist model: attention with a K/V cache, pre-LN layers,
drop-path, and the position machinery (decoupled absolute-position bias, bucketed relative bias)."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import ModelConfig
from .cpu_linear import Linear


def activation_dtype(reference: torch.Tensor) -> torch.dtype:
    """The dtype attention runs in: the autocast dtype when autocast is on, else the tensor's own."""
    device_type = reference.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return reference.dtype


def padding_bias(padding_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, S] True-where-padded -> additive key bias [B, 1, 1, S] (0 or the dtype's most negative value).

    The finite minimum (not -inf) keeps a fully padded row finite instead of NaN.
    """
    bias = torch.zeros(padding_mask.shape, dtype=dtype, device=padding_mask.device)
    return bias.masked_fill(padding_mask, torch.finfo(dtype).min)[:, None, None, :]


def causal_bias(length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[T, T] additive mask hiding future keys from every query."""
    return torch.full((length, length), torch.finfo(dtype).min, dtype=dtype, device=device).triu(1)


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


class RelativePositionBias(nn.Module):
    """A learned bucket -> per-head bias table for each of `num_layers` layers (zero at init)."""

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


class ScaledTokenEmbedding(nn.Module):
    """Shared token table x sqrt(d), then a layer norm of its own (OFA's layernorm_embedding)."""

    def __init__(self, embed_tokens: nn.Embedding):
        super().__init__()
        self.embed_tokens = embed_tokens
        self.scale = math.sqrt(embed_tokens.embedding_dim)
        self.layer_norm = nn.LayerNorm(embed_tokens.embedding_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(self.embed_tokens(tokens) * self.scale)


class SequencePositions(nn.Module):
    """1-D positions of a token sequence: absolute position vectors and per-layer bucketed relative bias."""

    def __init__(self, max_positions: int, embed_dim: int, num_layers: int, num_heads: int,
                 num_buckets: int, max_distance: int, owner: str):
        super().__init__()
        self.max_positions, self.owner = max_positions, owner
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.table = nn.Embedding(max_positions, embed_dim)
        nn.init.normal_(self.table.weight, std=embed_dim**-0.5)
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.relative = RelativePositionBias(num_buckets, num_layers, num_heads)

    @classmethod
    def for_encoder_piece(cls, model_cfg: ModelConfig, max_positions: int, owner: str) -> "SequencePositions":
        """The positions of a 1-D encoder piece (audio, motion): a bias table per encoder layer, text's buckets."""
        return cls(max_positions, model_cfg.embed_dim, model_cfg.encoder_layers, model_cfg.attention_heads,
                   model_cfg.text_rel_buckets, model_cfg.text_rel_max_distance, owner)

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
        relative = key_positions[None, :] - query_positions[:, None]
        return self.relative(relative_position_bucket(relative, self.num_buckets, self.max_distance))


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples, rescaling the kept ones."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.size(0),) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Attention(nn.Module):
    """Multi-head attention through scaled_dot_product_attention with an additive float bias.

    `cache` is the dict this attention owns in an incremental state: self-attention appends each
    step's K/V to it; cross-attention fills it once from `memory` and reuses it afterwards.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by attention_heads={num_heads}")
        self.num_heads, self.dropout = num_heads, dropout
        self.q_proj = Linear(embed_dim, embed_dim)
        self.k_proj = Linear(embed_dim, embed_dim)
        self.v_proj = Linear(embed_dim, embed_dim)
        self.out_proj = Linear(embed_dim, embed_dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def keys_values(self, x: torch.Tensor, memory: Optional[torch.Tensor], cache: Optional[dict]):
        if memory is not None:
            if cache is not None and "k" in cache:
                return cache["k"], cache["v"]
            k, v = self.split_heads(self.k_proj(memory)), self.split_heads(self.v_proj(memory))
        else:
            k, v = self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))
            if cache is not None and "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
        if cache is not None:
            cache["k"], cache["v"] = k, v
        return k, v

    def forward(self, x: torch.Tensor, bias: torch.Tensor, memory: Optional[torch.Tensor] = None,
                cache: Optional[dict] = None) -> torch.Tensor:
        """x [B, Tq, D]; bias broadcastable to [B, H, Tq, Tk]; memory [B, S, D] for cross-attention.

        Cross-attention memory (and its cache) may also hold one row per group of B / R consecutive rows
        of x (the beams of one source); `bias` then has 1, R or B rows.
        """
        q = self.split_heads(self.q_proj(x))
        k, v = self.keys_values(x, memory, cache)
        out = grouped_attention(q, k, v, bias.to(q.dtype), self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).flatten(2))


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                      dropout: float) -> torch.Tensor:
    """scaled_dot_product_attention where k/v [R, H, S, d] serve groups of N / R consecutive query rows of
    q [N, H, T, d]: each group's queries are stacked along time, so K/V are stored and read once per row."""
    rows, count = k.size(0), q.size(0)
    if rows == count:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
    if count % rows:
        raise ValueError(f"attention: {count} query rows cannot share the keys of {rows} rows "
                         f"(expected a multiple of {rows})")
    groups, (_, heads, length, dim) = count // rows, q.shape
    q = q.view(rows, groups, heads, length, dim).transpose(1, 2).reshape(rows, heads, groups * length, dim)
    bias = bias.expand(*bias.shape[:2], length, k.size(2))
    if bias.size(0) == count:
        bias = bias.view(rows, groups, *bias.shape[1:]).transpose(1, 2)
    else:
        bias = bias.unsqueeze(2).expand(bias.size(0), bias.size(1), groups, *bias.shape[2:])
    bias = bias.reshape(bias.size(0), bias.size(1), groups * length, bias.size(-1))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
    return out.view(rows, heads, groups, length, dim).transpose(1, 2).reshape(count, heads, length, dim)


class FeedForward(nn.Module):
    """Position-wise GELU feed-forward block."""

    def __init__(self, embed_dim: int, ffn_dim: int, activation_dropout: float):
        super().__init__()
        self.fc1 = Linear(embed_dim, ffn_dim)
        self.fc2 = Linear(ffn_dim, embed_dim)
        self.activation_dropout = nn.Dropout(activation_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_dropout(F.gelu(self.fc1(x))))


class Residual(nn.Module):
    """Pre-LN residual branch: x + drop_path(dropout(fn(norm(x), ...)))."""

    def __init__(self, block: nn.Module, embed_dim: int, dropout: float, drop_path: float):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.block = block
        self.dropout = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return x + self.drop_path(self.dropout(self.block(self.norm(x), *args, **kwargs)))


def attention_branch(cfg: "ModelConfig", drop_path: float) -> Residual:
    return Residual(Attention(cfg.embed_dim, cfg.attention_heads, cfg.attention_dropout),
                    cfg.embed_dim, cfg.dropout, drop_path)


def feed_forward_branch(cfg: "ModelConfig", drop_path: float) -> Residual:
    return Residual(FeedForward(cfg.embed_dim, cfg.ffn_embed_dim, cfg.activation_dropout),
                    cfg.embed_dim, cfg.dropout, drop_path)


class EncoderLayer(nn.Module):
    """Pre-LN self-attention + feed-forward."""

    def __init__(self, cfg: "ModelConfig", drop_path: float):
        super().__init__()
        self.self_attn = attention_branch(cfg, drop_path)
        self.ffn = feed_forward_branch(cfg, drop_path)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.self_attn(x, bias))


class DecoderLayer(nn.Module):
    """Pre-LN causal self-attention + cross-attention over the encoder output + feed-forward."""

    def __init__(self, cfg: "ModelConfig", drop_path: float):
        super().__init__()
        self.self_attn = attention_branch(cfg, drop_path)
        self.cross_attn = attention_branch(cfg, drop_path)
        self.ffn = feed_forward_branch(cfg, drop_path)

    def forward(self, x: torch.Tensor, self_bias: torch.Tensor, memory: torch.Tensor, cross_bias: torch.Tensor,
                self_cache: Optional[dict] = None, cross_cache: Optional[dict] = None) -> torch.Tensor:
        x = self.self_attn(x, self_bias, cache=self_cache)
        x = self.cross_attn(x, cross_bias, memory=memory, cache=cross_cache)
        return self.ffn(x)


def drop_path_rates(max_rate: float, num_layers: int) -> list[float]:
    """Stochastic-depth rate per layer, rising linearly from 0 to `max_rate`."""
    return [max_rate * index / max(num_layers - 1, 1) for index in range(num_layers)]


def run_layer(layer: nn.Module, use_checkpoint: bool, *args) -> torch.Tensor:
    """Call a layer, recomputing its activations in the backward pass when `use_checkpoint`."""
    if use_checkpoint:
        return checkpoint(layer, *args, use_reentrant=False)
    return layer(*args)
