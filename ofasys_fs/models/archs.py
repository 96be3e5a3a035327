"""The generalist model's named size presets (fairseq's --arch) and the resolution of a ModelConfig."""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Optional

from ..errors import ConfigError
from ..registry import ARCH_MODEL, did_you_mean, get_architecture, register_model_architecture
from .config import ModelConfig


class ArchPreset(NamedTuple):
    embed_dim: int
    ffn_embed_dim: int
    attention_heads: int
    encoder_layers: int
    decoder_layers: int
    image_adaptor: str
    patch_size: int
    patch_image_size: int  # image side when the image adaptor is image_patch
    resnet_depth: int


RESNET_IMAGE_SIZE = 480  # OFA's input side for the ResNet adaptor

ARCH_PRESETS: dict[str, ArchPreset] = {
    "micro": ArchPreset(64, 256, 2, 2, 2, "image_patch", 8, 32, 50),
    "tiny": ArchPreset(256, 1024, 4, 4, 4, "image_patch", 8, 64, 50),
    "medium": ArchPreset(512, 2048, 8, 4, 4, "image_resnet", 16, 256, 101),
    "base": ArchPreset(768, 3072, 12, 6, 6, "image_resnet", 16, 256, 101),
    "large": ArchPreset(1024, 4096, 16, 12, 12, "image_resnet", 16, 256, 152),
    "huge": ArchPreset(1280, 5120, 16, 24, 12, "image_resnet", 16, 256, 152),
}


def apply_preset(preset: ArchPreset, cfg: ModelConfig) -> ModelConfig:
    """Fill every None size of `cfg` from `preset`; fields the user set win."""
    filled = {name: getattr(preset, name) for name in (
        "embed_dim", "ffn_embed_dim", "attention_heads", "encoder_layers", "decoder_layers",
        "image_adaptor", "patch_size", "resnet_depth") if getattr(cfg, name) is None}
    cfg = dataclasses.replace(cfg, **filled)
    if cfg.image_size is None:
        image_size = preset.patch_image_size if cfg.image_adaptor == "image_patch" else RESNET_IMAGE_SIZE
        cfg = dataclasses.replace(cfg, image_size=image_size)
    return cfg


for _name, _preset in ARCH_PRESETS.items():
    register_model_architecture("generalist", _name)(functools.partial(apply_preset, _preset))


def resolve_config(cfg: ModelConfig) -> ModelConfig:
    """A copy of `cfg` with its arch applied and every field checked (errors name the field)."""
    arch_fn = get_architecture(cfg.arch)
    if ARCH_MODEL[cfg.arch] != "generalist":
        raise ConfigError(f'architecture "{cfg.arch}" belongs to model "{ARCH_MODEL[cfg.arch]}", not "generalist"')
    resolved = arch_fn(dataclasses.replace(cfg))
    if not isinstance(resolved, ModelConfig):
        raise TypeError(f'architecture "{cfg.arch}" must return a ModelConfig, got {type(resolved).__name__}')
    check_config(resolved)
    return resolved


OPTIONAL_FIELDS = ("resnet_depth", "image_backbone_weights", "ctc_head", "ctc_phone_start", "ctc_num_phones",
                   "image_tokenizer", "image_code_grid", "image_code_range")


def check_config(cfg: ModelConfig) -> None:
    """Raise ConfigError naming the first field an arch left unset, or two fields that do not fit together
    (each field's own rule is checked where it is declared, models/config.py)."""
    for field in dataclasses.fields(cfg):
        if getattr(cfg, field.name) is None and field.name not in OPTIONAL_FIELDS:
            raise ConfigError(f'model config: "{field.name}" is not set and arch "{cfg.arch}" does not fill it')
    if cfg.embed_dim % cfg.attention_heads:
        raise ConfigError(
            f"model config: embed_dim={cfg.embed_dim} must be divisible by attention_heads={cfg.attention_heads}"
        )
    for kind in ("text", "image"):
        buckets, distance = getattr(cfg, f"{kind}_rel_buckets"), getattr(cfg, f"{kind}_rel_max_distance")
        if distance <= buckets // 4:
            raise ConfigError(
                f"model config: {kind}_rel_max_distance must exceed {kind}_rel_buckets / 4 = {buckets // 4}, got {distance}"
            )


def config_with_overrides(cfg: Optional[ModelConfig], overrides: dict) -> ModelConfig:
    """`cfg` (default: ModelConfig()) with keyword overrides; an unknown key is an error with a suggestion."""
    base = cfg if cfg is not None else ModelConfig()
    if not isinstance(base, ModelConfig):
        raise TypeError(f"GeneralistModel expects a ModelConfig, got {type(base).__name__}")
    known = {field.name for field in dataclasses.fields(ModelConfig)}
    for key in overrides:
        if key not in known:
            raise TypeError(
                f'GeneralistModel has no option "{key}".{did_you_mean(key, known)} Options: {", ".join(sorted(known))}'
            )
    return dataclasses.replace(base, **overrides)
