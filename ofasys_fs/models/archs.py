"""The generalist model's config and its named size presets (fairseq's --arch)."""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Optional

from ..registry import ARCH_MODEL, did_you_mean, get_architecture, register_model_architecture


@dataclasses.dataclass
class ModelConfig:
    """Sizes, regularisation and adaptor choices of GeneralistModel; a None field is filled by the arch.

    Field names match the `model` section of configs.TrainConfig where they overlap.
    Embeddings are always shared by encoder, decoder and output projection (no switch).
    """

    arch: str = "tiny"
    embed_dim: Optional[int] = None
    ffn_embed_dim: Optional[int] = None
    attention_heads: Optional[int] = None
    encoder_layers: Optional[int] = None
    decoder_layers: Optional[int] = None
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    drop_path_rate: float = 0.0
    max_source_positions: int = 1024
    max_target_positions: int = 1024
    image_adaptor: Optional[str] = None  # used by image pieces whose adaptor is not named
    image_size: Optional[int] = None  # pixels per side the image adaptor expects
    patch_size: Optional[int] = None  # image_patch: pixels per patch side
    resnet_depth: Optional[int] = None  # image_resnet: 50 | 101 | 152
    image_backbone_weights: Optional[str] = None  # image_resnet: a torchvision ResNet state_dict (.pth) to start from
    audio_feature_dim: int = 80  # audio_fbank: features per input step (80 fbank bins x n_frames_per_step)
    audio_max_positions: int = 750  # audio_fbank: tokens after 4x subsampling (750 = 30 s of 10 ms frames)
    video_max_frames: int = 32  # video_frames: frames per video the temporal tables cover
    ctc_head: Optional[bool] = None  # CTC phone head on the encoder; None: when audio_fbank is built (docs/model.md)
    ctc_phone_start: Optional[int] = None  # CTC head: first phone id and number of phones (filled by build from
    ctc_num_phones: Optional[int] = None  # the vocabulary, saved with the config so a bare vocab size rebuilds it)
    text_rel_buckets: int = 32  # 1-D relative position buckets (text in encoder and decoder, audio, video frames)
    text_rel_max_distance: int = 128
    image_rel_buckets: int = 16  # relative buckets per image axis (table size: its square)
    image_rel_max_distance: int = 32
    checkpoint_activations: bool = False
    entangle_position_embedding: bool = False  # also add position vectors to the embeddings (OFA's flag)


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
        raise ValueError(f'architecture "{cfg.arch}" belongs to model "{ARCH_MODEL[cfg.arch]}", not "generalist"')
    resolved = arch_fn(dataclasses.replace(cfg))
    if not isinstance(resolved, ModelConfig):
        raise TypeError(f'architecture "{cfg.arch}" must return a ModelConfig, got {type(resolved).__name__}')
    check_config(resolved)
    return resolved


OPTIONAL_FIELDS = ("resnet_depth", "image_backbone_weights", "ctc_head", "ctc_phone_start", "ctc_num_phones")
# image_resnet: bottleneck blocks of ResNet stages 1-3 (layer1..layer3) per depth
RESNET_STAGE_BLOCKS = {50: (3, 4, 6), 101: (3, 4, 23), 152: (3, 8, 36)}


def check_config(cfg: ModelConfig) -> None:
    """Raise ValueError naming the first field that cannot build a model."""
    for field in dataclasses.fields(cfg):
        if getattr(cfg, field.name) is None and field.name not in OPTIONAL_FIELDS:
            raise ValueError(f'model config: "{field.name}" is not set and arch "{cfg.arch}" does not fill it')
    for name in ("embed_dim", "ffn_embed_dim", "attention_heads", "encoder_layers", "decoder_layers",
                 "max_source_positions", "max_target_positions", "image_size", "patch_size",
                 "audio_feature_dim", "audio_max_positions", "video_max_frames"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"model config: {name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("dropout", "attention_dropout", "activation_dropout", "drop_path_rate"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise ValueError(f"model config: {name} must be in [0, 1), got {getattr(cfg, name)}")
    if cfg.resnet_depth is not None and cfg.resnet_depth not in RESNET_STAGE_BLOCKS:
        raise ValueError(
            f"model config: resnet_depth must be one of {tuple(RESNET_STAGE_BLOCKS)}, got {cfg.resnet_depth}")
    if cfg.embed_dim % cfg.attention_heads:
        raise ValueError(
            f"model config: embed_dim={cfg.embed_dim} must be divisible by attention_heads={cfg.attention_heads}"
        )
    for kind in ("text", "image"):
        buckets, distance = getattr(cfg, f"{kind}_rel_buckets"), getattr(cfg, f"{kind}_rel_max_distance")
        if buckets < 4 or buckets % 2:
            raise ValueError(f"model config: {kind}_rel_buckets must be an even number >= 4, got {buckets}")
        if distance <= buckets // 4:
            raise ValueError(
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
