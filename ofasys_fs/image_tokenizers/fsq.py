"""Image tokenizer "fsq": a small convolutional autoencoder with finite scalar quantisation (Mentzer et al., 2023).

Each cell of the code grid is a vector of len(levels) numbers, each bounded and rounded to one of its
`levels`; the code is the mixed-radix number of those digits, so there are prod(levels) codes. Nothing is
learnt in the quantiser: no codebook, no commitment loss and no collapse; training minimises the
reconstruction error alone (straight-through rounding).
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..contracts import ImageTokenizer
from ..errors import ConfigError
from ..options import at_least, check_fields, option
from ..registry import register_image_tokenizer

BOUND_EPS = 1e-3  # keeps tanh's bound just inside the outermost level, so both edge levels are reachable


def check_levels(levels) -> None:
    if levels is None or len(levels) == 0 or any(int(level) < 2 for level in levels):
        raise ValueError("must list at least one quantisation level count, each >= 2 (e.g. [8, 5, 5, 5])")


@dataclasses.dataclass
class FSQConfig:
    """Sizes of an FSQ tokenizer: image side, code grid side, channels, levels per latent dimension, width."""

    image_size: int = option(16, "square image side in pixels", check=at_least(2))
    grid: int = option(4, "code grid side: image_size / grid must be a power of two", check=at_least(1))
    channels: int = option(1, "1 (grey) or 3 (RGB)", check=at_least(1))
    levels: tuple[int, ...] = option((8, 5, 5, 5), "levels per latent dimension; codes = their product",
                                     check=check_levels)
    hidden: int = option(64, "convolution channels", check=at_least(1))

    def __post_init__(self) -> None:
        check_fields(self, "fsq tokenizer config")
        self.levels = tuple(int(level) for level in self.levels)
        steps = math.log2(self.image_size / self.grid) if self.image_size >= self.grid else -1
        if steps < 0 or steps != int(steps):
            raise ConfigError(f"fsq tokenizer: image_size {self.image_size} / grid {self.grid} must be a power of "
                              f"two (1, 2, 4, ...): each halving is one strided convolution")
        if self.channels not in (1, 3):
            raise ConfigError(f"fsq tokenizer: channels must be 1 (grey) or 3 (RGB), got {self.channels}")

    @property
    def halvings(self) -> int:
        return int(math.log2(self.image_size // self.grid))


def encoder_stack(cfg: FSQConfig) -> nn.Sequential:
    layers = [nn.Conv2d(cfg.channels, cfg.hidden, 3, padding=1), nn.ReLU()]
    for _ in range(cfg.halvings):
        layers += [nn.Conv2d(cfg.hidden, cfg.hidden, 4, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(cfg.hidden, len(cfg.levels), 1))


def decoder_stack(cfg: FSQConfig) -> nn.Sequential:
    layers = [nn.Conv2d(len(cfg.levels), cfg.hidden, 3, padding=1), nn.ReLU()]
    for _ in range(cfg.halvings):
        layers += [nn.ConvTranspose2d(cfg.hidden, cfg.hidden, 4, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(cfg.hidden, cfg.channels, 3, padding=1))


@register_image_tokenizer("fsq", dataclass=FSQConfig)
class FSQTokenizer(ImageTokenizer):
    """Images [B, C, S, S] in [0, 1] <-> codes [B, grid, grid] in [0, prod(levels))."""

    def __init__(self, cfg: FSQConfig):
        super().__init__()
        self.cfg = cfg
        self.num_codes = math.prod(cfg.levels)
        self.grid, self.image_size, self.channels = (cfg.grid, cfg.grid), cfg.image_size, cfg.channels
        self.encoder, self.decoder = encoder_stack(cfg), decoder_stack(cfg)
        levels = torch.tensor(cfg.levels, dtype=torch.long)
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), 0),
                             persistent=False)

    def quantise(self, latent: torch.Tensor) -> torch.Tensor:
        """Latents [B, d, h, w] -> the nearest level of each dimension, scaled to [-1, 1] (straight-through)."""
        levels = self.levels.view(1, -1, 1, 1).to(latent.dtype)
        half = (levels - 1) * (1 + BOUND_EPS) / 2
        offset = (self.levels.view(1, -1, 1, 1) % 2 == 0).to(latent.dtype) * 0.5  # even counts: half-integer grid
        bounded = torch.tanh(latent + torch.atanh(offset / half)) * half - offset
        rounded = bounded + (bounded.round() - bounded).detach()
        return rounded / (self.levels.view(1, -1, 1, 1) // 2)

    def digits_of(self, quantised: torch.Tensor) -> torch.Tensor:
        width = (self.levels // 2).view(1, -1, 1, 1)
        return (quantised * width + width).round().long()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        digits = self.digits_of(self.quantise(self.encoder(images)))
        return (digits * self.basis.view(1, -1, 1, 1)).sum(dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        digits = (codes.unsqueeze(1) // self.basis.view(1, -1, 1, 1)) % self.levels.view(1, -1, 1, 1)
        width = (self.levels // 2).view(1, -1, 1, 1)
        quantised = (digits - width).float() / width
        return torch.sigmoid(self.decoder(quantised))

    def reconstruction_loss(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reconstructions = torch.sigmoid(self.decoder(self.quantise(self.encoder(images))))
        return F.mse_loss(reconstructions, images), reconstructions
