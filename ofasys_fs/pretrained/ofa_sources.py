"""Reading OFA's released files into one form: the weights under OFA's fairseq names, the training settings the
weights do not show, and what has no counterpart here (docs/pretrained.md, "What maps to what").

Three layouts: a fairseq checkpoint (`ofa_base.pt`: a pickle holding `model` and `args` or `cfg`), a Hugging Face
folder (`config.json`, `pytorch_model.bin` or `model.safetensors`), and OFASys's `multitask.pt` (the same network
split into adaptors, with `global_dict_indices`). Pickles are read without running code from them
(data/safe_pickle.py); Hugging Face weights with torch's weights_only loader or safetensors.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
from typing import Any, Optional

import torch

from ..checkpoint import unpickler_refusal
from ..data.safe_pickle import UnsafePickleError, load_fairseq_checkpoint, plain
from ..errors import CheckpointError

FAIRSEQ, HUGGINGFACE, OFASYS = "fairseq", "huggingface", "ofasys"
HF_CONFIG, HF_WEIGHTS = "config.json", ("model.safetensors", "pytorch_model.bin")

# Hugging Face port (OFA-Sys/OFA branch feature/add_transformers) -> fairseq, per layer component
HF_LAYER_COMPONENTS = {
    "encoder": {"self_attn_mid_layer_norm": "attn_ln", "ffn_layer_norm": "ffn_layernorm"},
    "decoder": {"self_attn_mid_layer_norm": "self_attn_ln", "cross_attn": "encoder_attn",
                "cross_attn_layer_norm": "encoder_attn_layer_norm", "cross_attn_mid_layer_norm": "cross_attn_ln",
                "ffn_layer_norm": "ffn_layernorm"},
}
# OFASys (ofasys/model, ofasys/adaptor) -> fairseq prefixes; encoder/decoder layers keep OFA's names
OFASYS_PREFIXES = {
    "encoder.adaptor.embed_tokens": "encoder.embed_tokens",
    "decoder.adaptor.embed_tokens": "decoder.embed_tokens",
    "encoder.adaptor.pos_q_linear": "encoder.pos_q_linear",
    "encoder.adaptor.pos_k_linear": "encoder.pos_k_linear",
    "decoder.adaptor.pos_q_linear": "decoder.self_pos_q_linear",
    "decoder.adaptor.pos_k_linear": "decoder.self_pos_k_linear",
    "encoder.adaptor.text.embed_positions": "encoder.embed_positions",
    "encoder.adaptor.text.layernorm_embedding": "encoder.layernorm_embedding",
    "encoder.adaptor.text.layernorm_position": "encoder.pos_ln",
    "encoder.adaptor.text.token_rel_pos_table_list": "encoder.token_rel_pos_table_list",
    "encoder.adaptor.text.token_rp_bucket": "encoder.token_rp_bucket",
    "encoder.adaptor.image_resnet.embed_images": "encoder.embed_images",
    "encoder.adaptor.image_resnet.image_proj": "encoder.image_proj",
    "encoder.adaptor.image_resnet.embed_image_positions": "encoder.embed_image_positions",
    "encoder.adaptor.image_resnet.layernorm_embedding": "encoder.patch_layernorm_embedding",
    "encoder.adaptor.image_resnet.layernorm_position": "encoder.image_pos_ln",
    "encoder.adaptor.image_resnet.image_rel_pos_table_list": "encoder.image_rel_pos_table_list",
    "encoder.adaptor.image_resnet.image_rp_bucket": "encoder.image_rp_bucket",
    "decoder.adaptor.text.embed_positions": "decoder.embed_positions",
    "decoder.adaptor.text.layernorm_embedding": "decoder.layernorm_embedding",
    "decoder.adaptor.text.layernorm_position": "decoder.pos_ln",
    "decoder.adaptor.text.token_rel_pos_table_list": "decoder.token_rel_pos_table_list",
    "decoder.adaptor.text.token_rp_bucket": "decoder.token_rp_bucket",
}
OFASYS_TYPE_EMBEDDINGS = ("encoder.adaptor.text.type_embedding.weight", "encoder.adaptor.image_resnet.type_embedding.weight")
OFASYS_UNMAPPED_REASONS = {
    "decoder.adaptor.text.type_embedding": "OFASys adds no type embedding to decoder pieces (unused there)",
    "decoder.adaptor.image_vqgan": "image-code generation (text-to-image) is not available in ofasys_fs yet",
    "encoder.adaptor.video_image_sequence": "OFASys's video adaptor shares the image adaptor's tables; ofasys_fs's "
                                            "video_frames adaptor has its own layout",
    "encoder.adaptor.audio_fbank": "OFASys's audio adaptor (conv2d subsampling, TTS parts) differs from ofasys_fs's "
                                   "audio_fbank",
}


@dataclasses.dataclass
class OFASource:
    """One OFA file read: `weights` under fairseq OFA names; `settings` of the run that wrote it (OFA's option
    names: attn_scale_factor, no_scale_embedding, disable_entangle, patch_image_size, code_dict_size, num_bins,
    ...); `unmapped` source tensors without a counterpart here, with the reason; OFASys's token -> row table."""

    layout: str
    path: str
    weights: dict[str, torch.Tensor]
    settings: dict[str, Any]
    tensors: int
    unmapped: dict[str, str] = dataclasses.field(default_factory=dict)
    token_rows: Optional[dict[str, int]] = None


def read_source(path: str, use_ema: bool = False) -> OFASource:
    """The OFA file or Hugging Face folder at `path`, in whichever of the three layouts it is."""
    if os.path.isdir(path):
        if use_ema:
            raise CheckpointError(f"{path}: a Hugging Face folder has no EMA weights (--use-ema is for fairseq files)")
        return read_huggingface(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} does not exist (expected an OFA .pt file or a Hugging Face OFA folder)")
    checkpoint = read_pickle(path)
    weights = checkpoint_weights(checkpoint, path, use_ema)
    if any(key.startswith("encoder.adaptor.") for key in weights):
        return read_ofasys(path, checkpoint, weights)
    return OFASource(FAIRSEQ, path, weights, fairseq_settings(checkpoint), len(weights))


def read_pickle(path: str) -> dict:
    try:
        checkpoint = plain(load_fairseq_checkpoint(path))
    except UnsafePickleError as err:
        raise CheckpointError(f"refusing to load {err}") from None
    except pickle.UnpicklingError as err:
        raise unpickler_refusal(path, err) from err
    except (RuntimeError, EOFError, ValueError, OSError) as err:  # torch.load's damaged-file errors
        raise CheckpointError(f"{path} is not a readable OFA checkpoint (truncated or corrupt?): "
                              f"{type(err).__name__}: {err}") from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise CheckpointError(f"{path} is not an OFA/OFASys checkpoint: expected a dict with the weights under "
                              f"'model', got {sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__}")
    return checkpoint


def checkpoint_weights(checkpoint: dict, path: str, use_ema: bool) -> dict[str, torch.Tensor]:
    weights = checkpoint["model"]
    if use_ema:
        weights = (checkpoint.get("extra_state") or {}).get("ema")
        if not isinstance(weights, dict):
            raise CheckpointError(f"{path} has no EMA weights (extra_state['ema']); leave out --use-ema")
    not_tensors = [key for key, value in weights.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: the weights hold non-tensor values under {not_tensors[:5]}")
    return dict(weights)


def fairseq_settings(checkpoint: dict) -> dict[str, Any]:
    """The run's options: legacy `args`, then `cfg['task']` and `cfg['model']` (fairseq's newer layout) on top."""
    cfg = checkpoint.get("cfg") or {}
    settings: dict[str, Any] = {}
    for part in (checkpoint.get("args"), cfg.get("task"), cfg.get("model")):
        if isinstance(part, dict):
            settings.update(part)
    return settings


def read_huggingface(folder: str) -> OFASource:
    config_path = os.path.join(folder, HF_CONFIG)
    try:
        with open(config_path, encoding="utf-8") as handle:
            config = json.load(handle)
    except FileNotFoundError:
        raise CheckpointError(f"{folder} has no {HF_CONFIG}: expected a Hugging Face OFA folder ({HF_CONFIG}, "
                              f"{' or '.join(HF_WEIGHTS)}, vocab.json, merges.txt)") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_path} is not valid JSON: {err}") from None
    weights_path = next((os.path.join(folder, name) for name in HF_WEIGHTS
                         if os.path.isfile(os.path.join(folder, name))), None)
    if weights_path is None:
        raise CheckpointError(f"{folder} has no weights: expected {' or '.join(HF_WEIGHTS)}")
    weights = huggingface_weights(weights_path)
    renamed = {huggingface_to_fairseq(key.removeprefix("model.")): value for key, value in weights.items()}
    return OFASource(HUGGINGFACE, folder, renamed, huggingface_settings(config), len(weights))


def huggingface_weights(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from None
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise unpickler_refusal(path, err) from err
    except (RuntimeError, EOFError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable weights file: {type(err).__name__}: {err}") from err
    if not isinstance(weights, dict) or not all(isinstance(value, torch.Tensor) for value in weights.values()):
        raise CheckpointError(f"{path}: expected a state dict (names -> tensors)")
    return weights


def huggingface_to_fairseq(key: str) -> str:
    """Rename one Hugging Face key by whole path components (`attn_ln` is part of `self_attn_ln`: never by
    substring)."""
    parts = key.split(".")
    if len(parts) > 3 and parts[1] == "layers" and parts[0] in HF_LAYER_COMPONENTS:
        parts[3] = HF_LAYER_COMPONENTS[parts[0]].get(parts[3], parts[3])
    return ".".join(parts)


def huggingface_settings(config: dict) -> dict[str, Any]:
    """config.json's fields under OFA's fairseq option names (what the weights do not show)."""
    settings = {key: config[key] for key in ("attn_scale_factor", "code_image_size", "token_bucket_size",
                                             "image_bucket_size", "entangle_position_embedding") if key in config}
    if "scale_embedding" in config:
        settings["no_scale_embedding"] = not config["scale_embedding"]
    if "max_position_embeddings" in config:
        settings["max_source_positions"] = settings["max_target_positions"] = config["max_position_embeddings"]
    return settings


def read_ofasys(path: str, checkpoint: dict, weights: dict[str, torch.Tensor]) -> OFASource:
    """OFASys's multitask.pt: adaptor names back to OFA's; adaptors without a counterpart are listed."""
    renamed: dict[str, torch.Tensor] = {}
    unmapped: dict[str, str] = {}
    for key, value in weights.items():
        if key in OFASYS_TYPE_EMBEDDINGS:
            continue
        target = ofasys_to_fairseq(key)
        if target is not None:
            renamed[target] = value
        else:
            unmapped[key] = ofasys_unmapped_reason(key)
    types = [weights[key] for key in OFASYS_TYPE_EMBEDDINGS if key in weights]
    if types:
        renamed["encoder.type_embedding.weight"] = torch.cat(types)
    token_rows = checkpoint.get("global_dict_indices")
    if not isinstance(token_rows, dict):
        raise CheckpointError(f"{path}: an OFASys checkpoint needs 'global_dict_indices' (which token each embedding "
                              f"row is); it has none")
    store = checkpoint.get("configstore") or {}
    settings = dict(((store.get("model") or {}).get("unify") or {}))
    return OFASource(OFASYS, path, renamed, settings, len(weights), unmapped, token_rows)


def ofasys_to_fairseq(key: str) -> Optional[str]:
    """OFA's name of an OFASys tensor, or None when it belongs to an adaptor without a counterpart."""
    for prefix, target in OFASYS_PREFIXES.items():
        if key == prefix or key.startswith(prefix + "."):
            return target + key[len(prefix):]
    if key.startswith(("encoder.adaptor.", "decoder.adaptor.", "extra_models.")):
        return None
    return key


def ofasys_unmapped_reason(key: str) -> str:
    for prefix, reason in OFASYS_UNMAPPED_REASONS.items():
        if key.startswith(prefix + "."):
            return reason
    owner = ".".join(key.split(".")[:3])
    return f"{owner} has no counterpart in ofasys_fs"
