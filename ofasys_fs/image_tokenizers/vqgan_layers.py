"""The convolutional encoder and decoder of taming-transformers' VQGAN (Esser et al., 2021), with the same
module names, so that its checkpoints load by state-dict key: resnet blocks with group norm and swish,
single-head spatial attention at the listed resolutions, strided-convolution downsampling and
nearest-neighbour upsampling."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = group_norm(in_channels), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2, self.conv2 = group_norm(out_channels), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        batch, channels, rows, cols = h.shape
        q, k, v = (conv(h).flatten(2).transpose(1, 2) for conv in (self.q, self.k, self.v))
        attended = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(attended.transpose(1, 2).reshape(batch, channels, rows, cols))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # taming's asymmetric padding


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def level_blocks(count: int, in_channels: int, out_channels: int, attend: bool, dropout: float) -> nn.Module:
    """One resolution level: `count` resnet blocks (and attention after each when `attend`)."""
    level = nn.Module()
    level.block = nn.ModuleList(ResnetBlock(in_channels if i == 0 else out_channels, out_channels, dropout)
                                for i in range(count))
    level.attn = nn.ModuleList(AttnBlock(out_channels) for _ in range(count if attend else 0))
    return level


def middle(channels: int, dropout: float) -> nn.Module:
    mid = nn.Module()
    mid.block_1, mid.attn_1 = ResnetBlock(channels, channels, dropout), AttnBlock(channels)
    mid.block_2 = ResnetBlock(channels, channels, dropout)
    return mid


def run_level(level: nn.Module, h: torch.Tensor) -> torch.Tensor:
    for index, block in enumerate(level.block):
        h = block(h)
        if len(level.attn):
            h = level.attn[index](h)
    return h


def run_middle(mid: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return mid.block_2(mid.attn_1(mid.block_1(h)))


class Encoder(nn.Module):
    """Image [B, in_channels, R, R] in [-1, 1] -> latents [B, z_channels, R / 2^(levels-1), ...]."""

    def __init__(self, *, ch: int, ch_mult, num_res_blocks: int, attn_resolutions, in_channels: int,
                 resolution: int, z_channels: int, dropout: float = 0.0, double_z: bool = False, **_):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        size, channels = resolution, ch
        for index, mult in enumerate(ch_mult):
            level = level_blocks(num_res_blocks, channels, ch * mult, size in attn_resolutions, dropout)
            channels = ch * mult
            if index != len(ch_mult) - 1:
                level.downsample = Downsample(channels)
                size //= 2
            self.down.append(level)
        self.mid = middle(channels, dropout)
        self.norm_out = group_norm(channels)
        self.conv_out = nn.Conv2d(channels, 2 * z_channels if double_z else z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = run_level(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return self.conv_out(F.silu(self.norm_out(run_middle(self.mid, h))))


class Decoder(nn.Module):
    """Latents [B, z_channels, r, r] -> image [B, out_ch, r * 2^(levels-1), ...] in about [-1, 1]."""

    def __init__(self, *, ch: int, out_ch: int, ch_mult, num_res_blocks: int, attn_resolutions,
                 resolution: int, z_channels: int, dropout: float = 0.0, **_):
        super().__init__()
        channels, size = ch * ch_mult[-1], resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, channels, 3, padding=1)
        self.mid = middle(channels, dropout)
        levels = []
        for index in reversed(range(len(ch_mult))):
            level = level_blocks(num_res_blocks + 1, channels, ch * ch_mult[index], size in attn_resolutions, dropout)
            channels = ch * ch_mult[index]
            if index != 0:
                level.upsample = Upsample(channels)
                size *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(channels)
        self.conv_out = nn.Conv2d(channels, out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = run_middle(self.mid, self.conv_in(z))
        for level in reversed(self.up):
            h = run_level(level, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
