"""The generalist model's named presets (fairseq's --arch): sizes and the layer details ("layout") of the
ofasys_fs archs micro..huge and of OFA's ofa_tiny..ofa_huge; and the resolution of a ModelConfig."""
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


RESNET_IMAGE_SIZE = 480  # OFA's input side for the ResNet adaptor (its fine-tuning default)

ARCH_PRESETS: dict[str, ArchPreset] = {
    "micro": ArchPreset(64, 256, 2, 2, 4, "image_patch", 8, 32, 50),
    "tiny": ArchPreset(256, 1024, 4, 4, 4, "image_patch", 8, 64, 50),
    "medium": ArchPreset(512, 2048, 8, 4, 4, "image_resnet", 16, 256, 101),
    "base": ArchPreset(768, 3072, 12, 6, 6, "image_resnet", 16, 256, 101),
    "large": ArchPreset(1024, 4096, 16, 12, 12, "image_resnet", 16, 256, 152),
    "huge": ArchPreset(1280, 5120, 16, 24, 12, "image_resnet", 16, 256, 152),
}
# OFA's released models (OFA-Sys/OFA models/ofa/ofa.py presets; ResNet-50/101/152 stages 1-3), with OFA_LAYOUT
OFA_ARCH_PRESETS: dict[str, ArchPreset] = {
    "ofa_tiny": ArchPreset(256, 1024, 4, 4, 4, "image_resnet", 16, 256, 50),
    "ofa_medium": ArchPreset(512, 2048, 8, 4, 4, "image_resnet", 16, 256, 101),
    "ofa_base": ArchPreset(768, 3072, 12, 6, 6, "image_resnet", 16, 256, 101),
    "ofa_large": ArchPreset(1024, 4096, 16, 12, 12, "image_resnet", 16, 256, 152),
    "ofa_huge": ArchPreset(1280, 5120, 16, 24, 12, "image_resnet", 16, 256, 152),
}

# The layer details every arch fills when the user leaves them at None: ofasys_fs's own (also what an arch
# that says nothing gets), and OFA's (the flags its released checkpoints were trained with:
# --scale-attn --scale-fc --scale-heads --add-type-embedding, no_scale_embedding, attn_scale_factor 2,
# token_bucket_size 256 over 1024 positions, image_bucket_size 42; PIL bicubic resize).
CLASSIC_LAYOUT = {
    "text_rel_buckets": 32, "text_rel_max_distance": 128, "image_rel_buckets": 16, "image_rel_max_distance": 32,
    "text_positions": "ofasys_fs", "image_positions": "ofasys_fs", "scale_embedding": True, "type_embedding": False,
    "attn_scale_factor": 1.0, "scale_heads": False, "scale_attn": False, "scale_fc": False, "image_first": False,
    "image_resize": "torch", "memory_positions": True,
}
OFA_LAYOUT = {
    **CLASSIC_LAYOUT,
    "text_rel_buckets": 256, "text_rel_max_distance": 1023, "image_rel_buckets": 42,
    "text_positions": "ofa", "image_positions": "ofa", "scale_embedding": False, "type_embedding": True,
    "attn_scale_factor": 2.0, "scale_heads": True, "scale_attn": True, "scale_fc": True, "image_first": True,
    "image_resize": "pil", "memory_positions": False,
}


def fill_unset(cfg: ModelConfig, values: dict) -> ModelConfig:
    """`cfg` with every field that is None taken from `values`; fields the user set win."""
    return dataclasses.replace(cfg, **{name: value for name, value in values.items() if getattr(cfg, name) is None})


def apply_preset(preset: ArchPreset, layout: dict, cfg: ModelConfig) -> ModelConfig:
    """Fill every None size and layer detail of `cfg` from `preset` and `layout`; fields the user set win."""
    cfg = fill_unset(cfg, {**layout, **{name: getattr(preset, name) for name in (
        "embed_dim", "ffn_embed_dim", "attention_heads", "encoder_layers", "decoder_layers",
        "image_adaptor", "patch_size", "resnet_depth")}})
    if cfg.image_size is None:
        image_size = preset.patch_image_size if cfg.image_adaptor == "image_patch" else RESNET_IMAGE_SIZE
        cfg = dataclasses.replace(cfg, image_size=image_size)
    return cfg


for _presets, _layout in ((ARCH_PRESETS, CLASSIC_LAYOUT), (OFA_ARCH_PRESETS, OFA_LAYOUT)):
    for _name, _preset in _presets.items():
        register_model_architecture("generalist", _name)(functools.partial(apply_preset, _preset, _layout))


def resolve_config(cfg: ModelConfig) -> ModelConfig:
    """A copy of `cfg` with its arch applied and every field checked (errors name the field)."""
    arch_fn = get_architecture(cfg.arch)
    if ARCH_MODEL[cfg.arch] != "generalist":
        raise ConfigError(f'architecture "{cfg.arch}" belongs to model "{ARCH_MODEL[cfg.arch]}", not "generalist"')
    resolved = arch_fn(dataclasses.replace(cfg))
    if not isinstance(resolved, ModelConfig):
        raise TypeError(f'architecture "{cfg.arch}" must return a ModelConfig, got {type(resolved).__name__}')
    resolved = fill_unset(resolved, CLASSIC_LAYOUT)
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
        style = getattr(cfg, f"{kind}_positions")
        if kind == "image" and style == "ofa":
            continue  # exact offsets: no last bucket
        exact = buckets // 2 if style == "ofa" else buckets // 4  # distances with a bucket of their own
        if distance <= exact:
            raise ConfigError(f"model config: {kind}_rel_max_distance must exceed the {exact} distances with a "
                              f"bucket of their own ({kind}_rel_buckets={buckets}, {style} style), got {distance}")


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
