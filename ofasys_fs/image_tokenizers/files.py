"""An image tokenizer as one file (its kind, config and weights; `torch.load(weights_only=True)`), its content
hash, and the process-wide set of tokenizers by hash that checkpoints and preprocessors refer to.

A model records the tokenizers it was trained with by content hash and stores their payloads in its
checkpoint (docs/design.md §14), so inference needs no path: `OFASys.from_pretrained` puts them back here.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Optional

import torch

from ..checkpoint import atomic_write, load_torch_file
from ..config import config_from_dict, config_to_dict
from ..contracts import ImageTokenizer
from ..errors import CheckpointError, OFASysError
from ..registry import IMAGE_TOKENIZER_REGISTRY

FILE_FORMAT = "ofasys_fs.image_tokenizer"
FILE_VERSION = 1
HASH_PREFIX = "sha256:"

_BY_HASH: dict[str, ImageTokenizer] = {}  # content hash -> tokenizer (loaded from a file or a checkpoint)
_BY_FILE: dict[tuple, str] = {}  # (real path, size, mtime) -> content hash


def tokenizer_payload(tokenizer: ImageTokenizer) -> dict:
    """What identifies a tokenizer: {"kind", "config", "weights"} as plain values and CPU tensors."""
    kind = getattr(type(tokenizer), "registered_name", None)
    if kind is None or not hasattr(tokenizer, "cfg"):
        raise TypeError(f"{type(tokenizer).__name__} is not a registered image tokenizer with a config (.cfg)")
    weights = {name: tensor.detach().cpu().clone() for name, tensor in tokenizer.state_dict().items()}
    return {"kind": kind, "config": config_to_dict(tokenizer.cfg), "weights": weights}


def content_hash(payload: dict) -> str:
    """"sha256:..." over the kind, the canonical config JSON and every weight's name, dtype, shape and bytes."""
    digest = hashlib.sha256(json.dumps([payload["kind"], payload["config"]], sort_keys=True).encode("utf-8"))
    for name in sorted(payload["weights"]):
        tensor = payload["weights"][name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode("utf-8"))
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return HASH_PREFIX + digest.hexdigest()


def tokenizer_from_payload(payload: Any, where: str) -> ImageTokenizer:
    """Build the tokenizer a payload describes, in eval mode and without gradients; CheckpointError naming
    `where` (the file or checkpoint) when the payload is not one."""
    if not isinstance(payload, dict) or not {"kind", "config", "weights"} <= set(payload):
        raise CheckpointError(f"{where}: expected an image tokenizer with 'kind', 'config' and 'weights'")
    kind = payload["kind"]
    if not isinstance(kind, str) or kind not in IMAGE_TOKENIZER_REGISTRY:
        raise CheckpointError(f"{where}: an image tokenizer of kind {kind!r}, which is not registered (known: "
                              f"{', '.join(IMAGE_TOKENIZER_REGISTRY.names())}; a --user-dir plugin registers more "
                              f"with register_image_tokenizer)")
    entry = IMAGE_TOKENIZER_REGISTRY.get(kind)
    try:
        tokenizer = entry.cls(config_from_dict(entry.dataclass, payload["config"], f"{where} (its config)"))
    except (OFASysError, ValueError, TypeError) as err:
        raise CheckpointError(f"{where}: its {kind} config cannot be used: {err}") from err
    try:
        tokenizer.load_state_dict(payload["weights"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{where}: its weights do not fit its {kind} config: "
                              f"{' '.join(str(err).split())[:300]}") from err
    return tokenizer.eval().requires_grad_(False)


def save_image_tokenizer(tokenizer: ImageTokenizer, path: str, info: Optional[dict] = None) -> str:
    """Write the tokenizer to `path` atomically (with plain `info`, e.g. its training summary); returns its hash."""
    payload = tokenizer_payload(tokenizer)
    state = {"format": FILE_FORMAT, "version": FILE_VERSION, **payload, "info": dict(info or {})}
    atomic_write(path, lambda handle: torch.save(state, handle))
    return remember(tokenizer)


def read_tokenizer_file(path: str) -> dict:
    """The payload of a tokenizer file, checked: exists, intact (CRCs), plain (weights_only), the right format."""
    state = load_torch_file(path, "image tokenizer")
    if not isinstance(state, dict) or state.get("format") != FILE_FORMAT:
        what = "a model checkpoint" if isinstance(state, dict) and "vocab" in state else "not one"
        raise CheckpointError(f"{path} is not an ofasys_fs image tokenizer file ({what}: no format "
                              f"{FILE_FORMAT!r}); train one with ofasys-train-image-tokenizer, or convert a VQGAN "
                              f"with ofasys-train-image-tokenizer --from-vqgan")
    if state.get("version") != FILE_VERSION:
        raise CheckpointError(f"image tokenizer {path} has version {state.get('version')!r}; this ofasys_fs reads "
                              f"version {FILE_VERSION}")
    return state


def load_image_tokenizer(path: str) -> ImageTokenizer:
    """The tokenizer in a file (memoised per file version), remembered by its content hash."""
    path = os.fspath(path)
    stat = os.stat(path) if os.path.isfile(path) else None
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns) if stat else None
    if key in _BY_FILE:
        return _BY_HASH[_BY_FILE[key]]
    tokenizer = tokenizer_from_payload(read_tokenizer_file(path), f"image tokenizer {path}")
    _BY_FILE[key] = remember(tokenizer)
    return tokenizer


def remember(tokenizer: ImageTokenizer) -> str:
    """Keep a tokenizer for look-up by its content hash (set as `tokenizer.content_hash`); returns the hash."""
    reference = content_hash(tokenizer_payload(tokenizer))
    tokenizer.content_hash = reference
    _BY_HASH.setdefault(reference, tokenizer)
    return reference


def remember_payload(payload: Any, recorded: str, where: str) -> None:
    """Put back a tokenizer a checkpoint stored under its content hash `recorded` (refused if it differs)."""
    if recorded in _BY_HASH:
        return
    tokenizer = tokenizer_from_payload(payload, where)
    if content_hash(tokenizer_payload(tokenizer)) != recorded:
        raise CheckpointError(f"{where}: the image tokenizer stored under {recorded[:20]}... has other content (the "
                              f"checkpoint was modified after it was written)")
    remember(tokenizer)


def remembered(reference: str) -> ImageTokenizer:
    """The tokenizer of a content hash; CheckpointError when this process has not loaded it."""
    if reference not in _BY_HASH:
        raise CheckpointError(f"image tokenizer {reference[:20]}... is not loaded in this process; load the model "
                              f"with OFASys.from_pretrained (its checkpoint holds it) or give the tokenizer file")
    return _BY_HASH[reference]
