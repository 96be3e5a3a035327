"""OFA's weights (fairseq names) -> the ModelConfig they need and the GeneralistModel state dict (docs/pretrained.md,
"What maps to what").

Sizes and flags come from the tensors (never from a file name); what the tensors cannot show comes from the
run's settings. Every source tensor is mapped, checked against what it is derived from (position buckets, tied
embeddings), or listed as having no counterpart; a missing, unknown or mis-shaped tensor is a CheckpointError
naming it.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Optional

import torch

from ..errors import CheckpointError
from ..models.archs import OFA_ARCH_PRESETS, OFA_LAYOUT
from ..models.config import RESNET_STAGE_BLOCKS, ModelConfig
from ..models.positions import OFA_EXTRA_POSITION_ROWS, ofa_image_bucket, ofa_relative_bucket
from ..models.task_batch_norm import is_task_statistic

DEFAULT_PATCH_IMAGE_SIZE = 384  # OFA's pretraining image side, for sources that do not record theirs
OFA_MAX_DISTANCE = 1023  # OFA builds its token buckets over 1024 positions whatever its max positions

TEXT, IMAGE = "encoder.adaptors.text.", "encoder.adaptors.image_resnet."
ENCODER_LAYER = {  # fairseq layer component -> ours
    "self_attn": "self_attn.block", "self_attn_layer_norm": "self_attn.norm", "attn_ln": "self_attn.output_norm",
    "fc1": "ffn.block.fc1", "fc2": "ffn.block.fc2", "ffn_layernorm": "ffn.block.inner_norm",
    "final_layer_norm": "ffn.norm",
}
DECODER_LAYER = {
    **{component: ours for component, ours in ENCODER_LAYER.items() if component != "attn_ln"},
    "self_attn_ln": "self_attn.output_norm", "encoder_attn": "cross_attn.block",
    "encoder_attn_layer_norm": "cross_attn.norm", "cross_attn_ln": "cross_attn.output_norm",
}
LAYER_COMPONENTS = {"encoder": ENCODER_LAYER, "decoder": DECODER_LAYER}
HEAD_GAIN = ("c_attn", "head_scale")  # OFA's per-head gain parameter -> ours
TOP_LEVEL = {  # fairseq module -> ours
    "encoder.layernorm_embedding": TEXT + "tokens.layer_norm",
    "encoder.embed_images": IMAGE + "backbone",
    "encoder.image_proj": IMAGE + "proj",
    "encoder.patch_layernorm_embedding": IMAGE + "layer_norm",
    "encoder.embed_positions": TEXT + "positions.table",
    "encoder.embed_image_positions": IMAGE + "positions.table",
    "encoder.pos_ln": TEXT + "positions.layer_norm",
    "encoder.image_pos_ln": IMAGE + "positions.position_norm",
    "encoder.pos_q_linear": "encoder.pos_q", "encoder.pos_k_linear": "encoder.pos_k",
    "encoder.layer_norm": "encoder.layer_norm",
    "decoder.layernorm_embedding": "decoder.tokens.layer_norm",
    "decoder.embed_positions": "decoder.positions.table",
    "decoder.pos_ln": "decoder.positions.layer_norm",
    "decoder.self_pos_q_linear": "decoder.self_pos_q", "decoder.self_pos_k_linear": "decoder.self_pos_k",
    "decoder.cross_pos_q_linear": "decoder.cross_pos_q", "decoder.cross_pos_k_linear": "decoder.cross_pos_k",
    "decoder.layer_norm": "decoder.layer_norm",
}
REL_TABLES = {  # per-layer fairseq tables -> our one table per owner (layer-major columns)
    "encoder.token_rel_pos_table_list": TEXT + "positions.relative.table.weight",
    "encoder.image_rel_pos_table_list": IMAGE + "positions.relative.table.weight",
    "decoder.token_rel_pos_table_list": "decoder.positions.relative.table.weight",
}
TIED = ("decoder.embed_tokens.weight", "decoder.output_projection.weight")
EMBEDDINGS = ("embed_tokens.weight", TEXT + "tokens.embed_tokens.weight", "decoder.tokens.embed_tokens.weight")
IMAGE_CODE_PARTS = ("decoder.code_layernorm_embedding", "decoder.embed_image_positions", "decoder.image_pos_ln",
                    "decoder.image_rel_pos_table_list")
DERIVED = ("encoder.version", "decoder.version", "decoder.image_position_idx")
UNSUPPORTED = {  # OFA options whose tensors ofasys_fs has no layers for
    "w_resid": "--scale-resids", "adapter": "--adapter", "encoder_prompt_encoder": "--encoder-prompt",
    "decoder_prompt_encoder": "--decoder-prompt", "classification_heads": "a classification head",
}


def under(key: str, module: str) -> bool:
    return key == module or key.startswith(module + ".")


def layer_count(weights: dict, side: str) -> int:
    indices = {int(match.group(1)) for key in weights if (match := re.match(rf"{side}\.layers\.(\d+)\.", key))}
    if not indices or indices != set(range(max(indices) + 1)):
        raise CheckpointError(f"the {side} layers are not numbered 0..N-1 (found {sorted(indices)[:8]})")
    return len(indices)


def required(weights: dict, key: str) -> torch.Tensor:
    if key not in weights:
        raise CheckpointError(f"missing tensor {key} (every OFA checkpoint has it)")
    return weights[key]


def resnet_depth(weights: dict) -> Optional[int]:
    """The depth whose bottleneck counts per stage the ResNet tensors show (None: no image backbone)."""
    if "encoder.embed_images.conv1.weight" not in weights:
        return None
    blocks = tuple(len({key.split(".")[3] for key in weights if key.startswith(f"encoder.embed_images.layer{stage}.")})
                   for stage in (1, 2, 3))
    for depth, stage_blocks in RESNET_STAGE_BLOCKS.items():
        if stage_blocks == blocks:
            return depth
    raise CheckpointError(f"the ResNet has {blocks} bottlenecks in stages 1-3; ofasys_fs builds "
                          f"{dict(RESNET_STAGE_BLOCKS)} (ResNet depth: blocks)")


def check_settings(settings: dict[str, Any]) -> None:
    """Refuse OFA options that change the computation in ways the converted model would not reproduce."""
    expected = {"attn_scale_factor": 2, "no_scale_embedding": True, "entangle_position_embedding": False,
                "encoder_normalize_before": True, "decoder_normalize_before": True, "share_all_embeddings": True}
    wrong = {key: settings[key] for key, value in expected.items() if key in settings and settings[key] != value}
    if wrong:
        raise CheckpointError(f"the checkpoint was trained with {wrong}; ofasys_fs reproduces OFA's released "
                              f"settings {{{', '.join(f'{key}: {expected[key]}' for key in wrong)}}} only")


def infer_config(weights: dict[str, torch.Tensor], settings: dict[str, Any],
                 image_size: Optional[int] = None) -> ModelConfig:
    """The ModelConfig whose model holds exactly these weights and computes what OFA computes."""
    check_settings(settings)
    for key in weights:
        for marker, option in UNSUPPORTED.items():
            if marker in key.split("."):
                raise CheckpointError(f"{key}: the checkpoint was trained with {option}, which ofasys_fs does not build")
    dim = required(weights, "encoder.embed_tokens.weight").shape[1]
    heads = required(weights, "encoder.token_rel_pos_table_list.0.weight").shape[1]
    ffn = required(weights, "encoder.layers.0.fc1.weight").shape[0]
    decoder_ffn = required(weights, "decoder.layers.0.fc1.weight").shape[0]
    if decoder_ffn != ffn:
        raise CheckpointError(f"encoder and decoder feed-forward widths differ ({ffn} vs {decoder_ffn}); ofasys_fs "
                              f"uses one ffn_embed_dim")
    token_buckets = required(weights, "encoder.token_rel_pos_table_list.0.weight").shape[0]
    stored_buckets = weights.get("encoder.token_rp_bucket")
    fields = dict(
        embed_dim=dim, ffn_embed_dim=ffn, attention_heads=heads,
        encoder_layers=layer_count(weights, "encoder"), decoder_layers=layer_count(weights, "decoder"),
        max_source_positions=required(weights, "encoder.embed_positions.weight").shape[0] - OFA_EXTRA_POSITION_ROWS,
        max_target_positions=required(weights, "decoder.embed_positions.weight").shape[0] - OFA_EXTRA_POSITION_ROWS,
        text_rel_buckets=(token_buckets + 1) // 2,
        text_rel_max_distance=OFA_MAX_DISTANCE if stored_buckets is None else stored_buckets.shape[0] - 1,
        type_embedding="encoder.type_embedding.weight" in weights,
        scale_heads="encoder.layers.0.self_attn.c_attn" in weights,
        scale_attn="encoder.layers.0.attn_ln.weight" in weights,
        scale_fc="encoder.layers.0.ffn_layernorm.weight" in weights,
        image_size=image_size or settings.get("patch_image_size") or DEFAULT_PATCH_IMAGE_SIZE,
        entangle_decoder_positions=settings.get("disable_entangle", True) is False,
        resnet_depth=resnet_depth(weights), image_adaptor="image_resnet",
    )
    if fields["resnet_depth"] is not None:
        fields["image_rel_buckets"] = round((weights["encoder.embed_image_positions.weight"].shape[0] - 1) ** 0.5)
    arch = next((name for name, preset in OFA_ARCH_PRESETS.items()
                 if (preset.embed_dim, preset.ffn_embed_dim, preset.attention_heads, preset.encoder_layers,
                     preset.decoder_layers) == (dim, ffn, heads, fields["encoder_layers"], fields["decoder_layers"])),
                "ofa_base")
    return ModelConfig(arch=arch, **{**{k: v for k, v in OFA_LAYOUT.items() if k not in fields}, **fields},
                       resnet_drop_path_rate=0.0)


@dataclasses.dataclass
class MappedWeights:
    """The state dict for the model, and what of the source it does not hold (name -> why)."""

    state: dict[str, torch.Tensor]
    unmapped: dict[str, str]


def map_weights(weights: dict[str, torch.Tensor], cfg: ModelConfig) -> MappedWeights:
    """fairseq OFA names -> GeneralistModel names; derived tensors are checked and left out."""
    state: dict[str, torch.Tensor] = {}
    unmapped: dict[str, str] = {}
    unknown: list[str] = []
    for key, value in weights.items():
        target = mapped_name(key)
        if target is not None:
            state[target] = value[..., None, None] if key == "encoder.image_proj.weight" else value
        elif any(under(key, part) for part in IMAGE_CODE_PARTS):
            unmapped[key] = "image-code generation (text-to-image) is not available in ofasys_fs yet"
        elif not (special(key, value, weights, cfg, state) or key in DERIVED or key.endswith("rp_bucket")
                  or any(under(key, table) for table in REL_TABLES)):
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{len(unknown)} tensors are not OFA's (unknown names): {unknown[:10]}")
    for prefix, target in REL_TABLES.items():
        tables = sorted((key for key in weights if under(key, prefix)), key=lambda key: int(key.split(".")[2]))
        shapes = {tuple(weights[key].shape) for key in tables}
        if len(shapes) > 1:
            raise CheckpointError(f"{prefix}: the per-layer tables have different shapes {sorted(shapes)}")
        if tables:
            state[target] = torch.cat([weights[key] for key in tables], dim=1)
    return MappedWeights(state, unmapped)


def mapped_name(key: str) -> Optional[str]:
    """Our name of a plainly renamed OFA tensor (None for the ones handled otherwise)."""
    for module, target in TOP_LEVEL.items():
        if under(key, module):
            return target + key[len(module):]
    parts = key.split(".")
    components = LAYER_COMPONENTS.get(parts[0], {})
    if len(parts) > 3 and parts[1] == "layers" and parts[3] in components:
        rest = [HEAD_GAIN[1] if part == HEAD_GAIN[0] else part for part in parts[4:]]
        return ".".join(parts[:3] + [components[parts[3]]] + rest)
    return None


def ofa_name(key: str) -> str:
    """The OFA tensor an ofasys_fs tensor comes from (for messages), the inverse of the mapping."""
    if key in EMBEDDINGS:
        return "encoder.embed_tokens.weight"
    if key.endswith("type_embedding"):
        return f"encoder.type_embedding.weight (row {1 if key.startswith(IMAGE) else 0})"
    for prefix, target in REL_TABLES.items():
        if key == target:
            return f"{prefix}.<layer>.weight"
    for module, target in TOP_LEVEL.items():
        if under(key, target):
            return module + key[len(target):]
    parts = key.split(".")
    rest = ".".join(parts[3:])
    for component, ours in LAYER_COMPONENTS.get(parts[0], {}).items():
        if under(rest, ours):
            tail = rest[len(ours):].replace("." + HEAD_GAIN[1], "." + HEAD_GAIN[0])
            return ".".join(parts[:3] + [component]) + tail
    return key


def special(key: str, value: torch.Tensor, weights: dict, cfg: ModelConfig, state: dict) -> bool:
    """Handle the tensors that are not a plain rename (True when `key` was one of them)."""
    if key == "encoder.embed_tokens.weight":
        for name in EMBEDDINGS:
            state[name] = value
        return True
    if key in TIED:
        shared = weights["encoder.embed_tokens.weight"]
        if value is not shared and (value.shape != shared.shape or not torch.equal(value, shared)):
            raise CheckpointError(f"{key} differs from encoder.embed_tokens.weight; ofasys_fs ties the token "
                                  f"embeddings and the output projection (OFA's share_all_embeddings)")
        return True
    if key == "encoder.type_embedding.weight":
        owners = [TEXT + "tokens.type_embedding"] + ([IMAGE + "type_embedding"] if cfg.resnet_depth else [])
        if value.shape[0] < len(owners):
            raise CheckpointError(f"{key} has {value.shape[0]} rows; expected one for text and one for images")
        for row, owner in enumerate(owners):
            state[owner] = value[row]
        return True
    if key.endswith("token_rp_bucket") or key.endswith("image_rp_bucket"):
        check_buckets(key, value, cfg)
    return False


def check_buckets(key: str, stored: torch.Tensor, cfg: ModelConfig) -> None:
    """A stored bucket table must equal the one the converted model computes (else its positions would differ)."""
    if key.endswith("token_rp_bucket"):
        positions = torch.arange(stored.shape[0])
        computed = ofa_relative_bucket(positions[:, None] - positions[None, :], cfg.text_rel_buckets,
                                       cfg.text_rel_max_distance)
    else:
        grid = cfg.image_rel_buckets
        stored, computed = stored[1:, 1:], ofa_image_bucket(grid, grid, grid, stored.device)
    if stored.shape != computed.shape or not torch.equal(stored.long(), computed):
        raise CheckpointError(f"{key} does not match OFA's bucket function for the sizes the weights show "
                              f"({cfg.text_rel_buckets} token buckets, image grid {cfg.image_rel_buckets}); "
                              f"the checkpoint was built with other position settings")


def check_against_model(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                        describe: Callable[[str], str]) -> dict[str, torch.Tensor]:
    """Every tensor the model has, of its shape: missing and mis-shaped tensors are one error listing them.
    BatchNorm counters absent from the source (OFA's FrozenBatchNorm) start at 0: they change no output; so do
    our BatchNorm statistics per task, which start empty."""
    state = dict(state)
    for key, value in expected.items():
        if key not in state and key.endswith("num_batches_tracked"):
            state[key] = torch.zeros_like(value)
        elif key not in state and is_task_statistic(key):
            state[key] = torch.zeros(value.shape, dtype=value.dtype)  # [0, ...]: a converted model has no task yet
    missing = [describe(key) for key in expected if key not in state]
    extra = [key for key in state if key not in expected]
    shapes = [f"{describe(key)} {list(state[key].shape)} (expected {list(value.shape)})"
              for key, value in expected.items() if key in state and state[key].shape != value.shape]
    problems = [f"{label}: {', '.join(items[:8])}{' ...' if len(items) > 8 else ''}"
                for label, items in (("missing tensors", missing), ("tensors of the wrong shape", shapes),
                                     ("tensors the model does not have", extra)) if items]
    if problems:
        raise CheckpointError("the OFA weights do not fit the model they describe; " + "; ".join(problems))
    return {key: state[key].to(expected[key].dtype) for key in expected}
