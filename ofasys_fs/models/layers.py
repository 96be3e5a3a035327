"""Transformer building blocks of the generalist model: token embeddings, attention with a K/V cache, pre-LN
layers with OFA's optional extra norms and head gains, drop-path (positions: models/positions.py)."""
from __future__ import annotations

import contextlib
import functools
import math
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import ModelConfig
from .cpu_linear import Linear

Biases = tuple[torch.Tensor, ...]  # additive attention-logit terms, each broadcastable to [B, H, Tq, Tk]


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


class ScaledTokenEmbedding(nn.Module):
    """Shared token table (x sqrt(d) with `scale`), plus a learned type vector with `type_embedding` (OFA's
    text type), then a layer norm of its own (OFA's layernorm_embedding)."""

    def __init__(self, embed_tokens: nn.Embedding, scale: bool = True, type_embedding: bool = False):
        super().__init__()
        dim = embed_tokens.embedding_dim
        self.embed_tokens = embed_tokens
        self.scale = math.sqrt(dim) if scale else 1.0
        self.type_embedding = type_vector(dim) if type_embedding else None
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, extra: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Token ids [B, T] -> [B, T, D]; `extra` ([T, D] or [B, T, D]) is added before the norm too."""
        x = self.embed_tokens(tokens) * self.scale
        for addend in (self.type_embedding, extra):
            if addend is not None:
                x = x + addend
        return self.layer_norm(x)


def type_vector(dim: int) -> nn.Parameter:
    """A learned modality-type vector added to a piece's embeddings (OFA's type_embedding rows)."""
    return nn.Parameter(torch.randn(dim) * dim**-0.5)


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
    """Multi-head attention with additive float biases (`attention`).

    `cache` is the dict this attention owns in an incremental state: self-attention appends each
    step's K/V to it; cross-attention fills it once from `memory` and reuses it afterwards. Logits are scaled
    by 1 / sqrt(scale_factor * head_dim) (OFA: factor 2); `scale_heads` multiplies each head's output by a
    learned gain (OFA's NormFormer c_attn).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float, scale_factor: float = 1.0,
                 scale_heads: bool = False):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by attention_heads={num_heads}")
        self.num_heads, self.dropout = num_heads, dropout
        self.scale = None if scale_factor == 1.0 else (scale_factor * embed_dim / num_heads) ** -0.5
        self.q_proj = Linear(embed_dim, embed_dim)
        self.k_proj = Linear(embed_dim, embed_dim)
        self.v_proj = Linear(embed_dim, embed_dim)
        self.out_proj = Linear(embed_dim, embed_dim)
        self.head_scale = nn.Parameter(torch.ones(num_heads)) if scale_heads else None
        self.recorded: Optional[list] = None  # a list while a caller records the weights (`recording_weights`)

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

    def forward(self, x: torch.Tensor, biases: Biases, memory: Optional[torch.Tensor] = None,
                cache: Optional[dict] = None) -> torch.Tensor:
        """x [B, Tq, D]; biases: additive terms, each broadcastable to [B, H, Tq, Tk]; memory [B, S, D] for
        cross-attention.

        Cross-attention memory (and its cache) may also hold one row per group of B / R consecutive rows
        of x (the beams of one source); each bias then has 1, R or B rows.
        """
        q = self.split_heads(self.q_proj(x))
        k, v = self.keys_values(x, memory, cache)
        biases = tuple(bias.to(q.dtype) for bias in biases)
        dropout = self.dropout if self.training else 0.0
        if self.recorded is None:
            out = grouped_attention(q, k, v, biases, dropout, self.scale)
        else:
            if k.size(0) != q.size(0):
                raise ValueError("attention: weights are recorded only when every query row has its own keys")
            weights = attention_weights(q, k, biases, self.scale)
            self.recorded.append(weights)
            out = torch.matmul(F.dropout(weights, dropout) if dropout else weights, v)
        if self.head_scale is not None:
            out = out * self.head_scale.to(out.dtype)[:, None, None]
        return self.out_proj(out.transpose(1, 2).flatten(2))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, biases: Biases, dropout: float,
              scale: Optional[float] = None) -> torch.Tensor:
    """softmax(q k^T * scale + sum(biases)) v, q [B, H, T, d], k/v [B, H, S, d].

    On CPU, a bias that needs a gradient sends scaled_dot_product_attention to its math path, which
    materialises the summed, batch-expanded mask (and its gradient); this adds each bias in place to the
    scores at its own broadcast shape instead (autograd sums its gradient over the broadcast rows). Anywhere
    else (no gradient to the biases, or another device) SDPA's fused kernels take the summed mask.
    """
    if q.device.type != "cpu" or not torch.is_grad_enabled() or not any(bias.requires_grad for bias in biases):
        mask = functools.reduce(torch.add, biases)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scale)
    weights = attention_weights(q, k, biases, scale)
    if dropout:
        weights = F.dropout(weights, dropout)
    return torch.matmul(weights, v)


def attention_weights(q: torch.Tensor, k: torch.Tensor, biases: Biases, scale: Optional[float] = None) -> torch.Tensor:
    """softmax(q k^T * scale + sum(biases)) [B, H, T, S], each bias added in place at its own broadcast shape."""
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(q.size(-1) ** -0.5 if scale is None else scale)
    for bias in biases:
        scores.add_(bias)
    return torch.softmax(scores, dim=-1)


@contextlib.contextmanager
def recording_weights(attentions: Sequence[Attention]) -> Iterator[list[list[torch.Tensor]]]:
    """Within the block each attention appends the weights of its calls ([B, H, T, S], with their gradient) to
    its own list of the yielded lists (guided attention reads them in the loss)."""
    recorded = [[] for _ in attentions]
    for attention_module, sink in zip(attentions, recorded):
        attention_module.recorded = sink
    try:
        yield recorded
    finally:
        for attention_module in attentions:
            attention_module.recorded = None


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, biases: Biases,
                      dropout: float, scale: Optional[float] = None) -> torch.Tensor:
    """`attention` where k/v [R, H, S, d] serve groups of N / R consecutive query rows of q [N, H, T, d]:
    each group's queries are stacked along time, so K/V are stored and read once per row.
    `scale`: the logit scale (None: 1 / sqrt(d))."""
    rows, count = k.size(0), q.size(0)
    if rows == count:
        return attention(q, k, v, biases, dropout, scale)
    if count % rows:
        raise ValueError(f"attention: {count} query rows cannot share the keys of {rows} rows "
                         f"(expected a multiple of {rows})")
    groups, (_, heads, length, dim) = count // rows, q.shape
    q = q.view(rows, groups, heads, length, dim).transpose(1, 2).reshape(rows, heads, groups * length, dim)
    bias = functools.reduce(torch.add, biases)
    bias = bias.expand(*bias.shape[:2], length, k.size(2))
    if bias.size(0) == count:
        bias = bias.view(rows, groups, *bias.shape[1:]).transpose(1, 2)
    else:
        bias = bias.unsqueeze(2).expand(bias.size(0), bias.size(1), groups, *bias.shape[2:])
    bias = bias.reshape(bias.size(0), bias.size(1), groups * length, bias.size(-1))
    out = attention(q, k, v, (bias,), dropout, scale)
    return out.view(rows, heads, groups, length, dim).transpose(1, 2).reshape(count, heads, length, dim)


class FeedForward(nn.Module):
    """Position-wise GELU feed-forward block; `inner_norm` layer-norms the activations before fc2 (OFA's
    NormFormer ffn_layernorm)."""

    def __init__(self, embed_dim: int, ffn_dim: int, activation_dropout: float, inner_norm: bool = False):
        super().__init__()
        self.fc1 = Linear(embed_dim, ffn_dim)
        self.fc2 = Linear(ffn_dim, embed_dim)
        self.activation_dropout = nn.Dropout(activation_dropout)
        self.inner_norm = nn.LayerNorm(ffn_dim) if inner_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation_dropout(F.gelu(self.fc1(x)))
        return self.fc2(x if self.inner_norm is None else self.inner_norm(x))


class Residual(nn.Module):
    """Pre-LN residual branch: x + drop_path(dropout(fn(norm(x), ...))); `output_norm` layer-norms fn's output
    before the dropout (OFA's NormFormer attn_ln)."""

    def __init__(self, block: nn.Module, embed_dim: int, dropout: float, drop_path: float,
                 output_norm: bool = False):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.block = block
        self.output_norm = nn.LayerNorm(embed_dim) if output_norm else None
        self.dropout = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = self.block(self.norm(x), *args, **kwargs)
        if self.output_norm is not None:
            out = self.output_norm(out)
        return x + self.drop_path(self.dropout(out))


def attention_branch(cfg: "ModelConfig", drop_path: float) -> Residual:
    attention = Attention(cfg.embed_dim, cfg.attention_heads, cfg.attention_dropout, cfg.attn_scale_factor,
                          cfg.scale_heads)
    return Residual(attention, cfg.embed_dim, cfg.dropout, drop_path, output_norm=cfg.scale_attn)


def feed_forward_branch(cfg: "ModelConfig", drop_path: float) -> Residual:
    return Residual(FeedForward(cfg.embed_dim, cfg.ffn_embed_dim, cfg.activation_dropout, cfg.scale_fc),
                    cfg.embed_dim, cfg.dropout, drop_path)


class EncoderLayer(nn.Module):
    """Pre-LN self-attention + feed-forward."""

    def __init__(self, cfg: "ModelConfig", drop_path: float):
        super().__init__()
        self.self_attn = attention_branch(cfg, drop_path)
        self.ffn = feed_forward_branch(cfg, drop_path)

    def forward(self, x: torch.Tensor, biases: Biases) -> torch.Tensor:
        return self.ffn(self.self_attn(x, biases))


class DecoderLayer(nn.Module):
    """Pre-LN causal self-attention + cross-attention over the encoder output + feed-forward."""

    def __init__(self, cfg: "ModelConfig", drop_path: float):
        super().__init__()
        self.self_attn = attention_branch(cfg, drop_path)
        self.cross_attn = attention_branch(cfg, drop_path)
        self.ffn = feed_forward_branch(cfg, drop_path)

    def forward(self, x: torch.Tensor, self_biases: Biases, memory: torch.Tensor, cross_biases: Biases,
                self_cache: Optional[dict] = None, cross_cache: Optional[dict] = None) -> torch.Tensor:
        x = self.self_attn(x, self_biases, cache=self_cache)
        x = self.cross_attn(x, cross_biases, memory=memory, cache=cross_cache)
        return self.ffn(x)


def drop_path_rates(max_rate: float, num_layers: int) -> list[float]:
    """Stochastic-depth rate per layer, rising linearly from 0 to `max_rate`."""
    return [max_rate * index / max(num_layers - 1, 1) for index in range(num_layers)]


def run_layer(layer: nn.Module, use_checkpoint: bool, *args) -> torch.Tensor:
    """Call a layer, recomputing its activations in the backward pass when `use_checkpoint`."""
    if use_checkpoint:
        return checkpoint(layer, *args, use_reentrant=False)
    return layer(*args)
