"""Checkpoint files: atomic writes, `weights_only` loads, and the key list of docs/design.md §14."""
from __future__ import annotations

import dataclasses
import errno
import os
import pickle
import tempfile
import zipfile
from typing import Any, Sequence

import torch

from .checkpoint_fairseq import SAFE_GLOBALS as FAIRSEQ_SAFE_GLOBALS
from .checkpoint_fairseq import from_fairseq, is_fairseq_checkpoint
from .checkpoint_layout import INFERENCE_KEYS, layout_problem
from .errors import CheckpointError

CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("version", "model", "vocab", "config", "tasks")


def fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, write) -> None:
    """Call write(file) on a temp file beside `path`, fsync, then rename over `path`.

    A crash or a full disk at any point leaves the previous file at `path` untouched.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(folder)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            reason = "the disk is full" if err.errno == errno.ENOSPC else err.strerror or str(err)
            raise CheckpointError(
                f"could not write {path}: {reason}; the previous file there (if any) is unchanged"
            ) from err
        raise


def save_checkpoint(state: dict[str, Any], path: str) -> None:
    """Write a checkpoint atomically; `state` holds tensors and plain Python values only."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"refusing to write {path}: checkpoint state lacks {missing}")
    atomic_write(path, lambda f: torch.save(state, f))


def verify_archive(path: str) -> None:
    """Check the CRC-32 of every member of a zip-format file (what torch.save writes): torch.load does not, so
    a flipped bit in a tensor would otherwise load silently. Other formats are left to torch.load."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError, EOFError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {err}") from err
    if damaged is not None:
        raise CheckpointError(f"{path} is corrupt: its member {damaged!r} fails the CRC-32 check (a damaged copy "
                              f"or disk); use another copy or an earlier checkpoint")


def unpickler_refusal(path: str, err: Exception) -> CheckpointError:
    """The error for a file torch's weights_only unpickler refused: one naming an object that could run code,
    or a damaged file; in both cases without torch's advice to load it unsafely."""
    text = " ".join(str(err).split())
    _, found, reason = text.partition("WeightsUnpickler error:")
    reason = (reason if found else text).split(" Please ")[0].split(" Check the documentation")[0].strip()[:200]
    if "global" in reason.lower() or "class" in reason.lower():
        return CheckpointError(f"refusing to load {path}: it holds objects other than tensors and plain values, "
                               f"which could run code when unpickled ({reason}); nothing in it was run")
    return CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt, or not written by torch.save): "
                           f"{reason}; nothing in it was run")


def checkpoints_beside(path: str) -> str:
    """What the folder of a missing checkpoint holds, to name the one the user meant."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"the folder {folder} does not exist either"
    found = sorted(name for name in os.listdir(folder) if name.endswith(".pt"))
    return f"{folder} holds {', '.join(found)}" if found else f"{folder} holds no checkpoint (*.pt)"


def load_torch_file(path: str, what: str = "checkpoint", map_location: Any = "cpu",
                    safe_globals: Sequence[Any] = ()) -> Any:
    """A `torch.save` file loaded with `weights_only=True` (a file that would run code when unpickled is refused)
    after its archive's CRCs are checked (a damaged file is refused rather than loaded with wrong values);
    errors are CheckpointErrors naming `what` and the path. `safe_globals`: classes the unpickler may also build."""
    if os.path.isdir(path):
        raise CheckpointError(f"{what} {path} is a folder; expected a file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} {path} does not exist; {checkpoints_beside(path)}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes): truncated or corrupt (a write that never "
                              f"finished?)")
    verify_archive(path)
    try:
        # only the ones not registered yet: leaving the context removes them, registered or not
        extra = [item for item in safe_globals if item not in torch.serialization.get_safe_globals()]
        with torch.serialization.safe_globals(extra):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise unpickler_refusal(path, err) from err
    except Exception as err:  # weights_only runs no code from the file; garbage raises many types in torch.load
        raise CheckpointError(f"{path} is not a readable {what} (truncated or corrupt?): "
                              f"{type(err).__name__}: {err}") from err


def load_checkpoint(path: str, map_location: Any = "cpu", for_inference: bool = False) -> dict[str, Any]:
    """Load a checkpoint with `load_torch_file` and check its version and layout (docs/design.md §14).
    `for_inference`: a fairseq checkpoint of the `ofasys` task is accepted too, as the keys inference reads
    (checkpoint_fairseq.py)."""
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path} is a folder; expected a checkpoint file such as "
                              f"{os.path.join(path, 'checkpoint_last.pt')}")
    state = load_torch_file(path, "checkpoint", map_location, FAIRSEQ_SAFE_GLOBALS if for_inference else ())
    if is_fairseq_checkpoint(state):
        if not for_inference:
            raise CheckpointError(f"{path} is a fairseq checkpoint: ofasys_fs reads it for inference and "
                                  f"--finetune-from-model, not to resume training (docs/fairseq.md)")
        state = {**from_fairseq(state, path), "version": CHECKPOINT_VERSION}
        problem = layout_problem(state, INFERENCE_KEYS)
        if problem is not None:
            raise CheckpointError(f"{path} {problem}")
        return with_former_defaults(state)
    if not isinstance(state, dict) or "version" not in state:
        raise CheckpointError(f"{path} is not an ofasys_fs checkpoint (no 'version' key)")
    if type(state["version"]) is not int or state["version"] > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {state['version']!r}; this ofasys_fs reads up to {CHECKPOINT_VERSION}"
        )
    problem = layout_problem(state)
    if problem is not None:
        raise CheckpointError(f"{path} {problem}")
    return with_former_defaults(state)


# model options added after checkpoints were written, with the value that rebuilds those checkpoints' models
FORMER_MODEL_DEFAULTS = {"continuous_decoder_layers": False, "mel_prenet_dropout": 0.0,
                         "continuous_cross_positions": False, "patch_stem": "linear", "memory_positions": False}


def with_former_defaults(state: dict) -> dict:
    """`state` whose stored model configs name every option of FORMER_MODEL_DEFAULTS (an older file: its value)."""
    config = state.get("config")
    if isinstance(config, dict):
        for model_cfg in (config.get("model"), (config.get("train") or {}).get("model")):
            if isinstance(model_cfg, dict):
                for key, value in FORMER_MODEL_DEFAULTS.items():
                    model_cfg.setdefault(key, value)
    return state


def model_description(model: Any, data_cfg: Any) -> dict:
    """The checkpoint's config entries that rebuild the model and its preprocessing from the file alone
    (OFASys.from_pretrained): a GeneralistModel's resolved config, vocab size and adaptors, and its DataConfig."""
    return {
        "model": dataclasses.asdict(model.cfg),
        "vocab_size": model.vocab_size,
        "adaptor_names": list(model.adaptor_names),
        "data": data_cfg.to_dict(),
    }


def inference_weights(state: dict) -> dict:
    """The weights to run: the EMA shadow when the run validated (and picked _best) with EMA, else `model`."""
    if state.get("train_meta", {}).get("best_weights") == "ema" and state.get("ema"):
        return state["ema"]["shadow"]
    return state["model"]
