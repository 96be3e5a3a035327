"""Checkpoint files: atomic writes, `weights_only` loads, and the key list of DESIGN §8."""
from __future__ import annotations

import errno
import os
import pickle
import tempfile
from typing import Any

import torch

CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("version", "model", "vocab", "config", "tasks")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read, with the file and the reason."""


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


def load_checkpoint(path: str, map_location: Any = "cpu") -> dict[str, Any]:
    """Load with `weights_only=True`: a file that would run code when unpickled is refused."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain values, which could "
            f"run code when unpickled (weights_only load failed: {str(err).splitlines()[0][:200]})"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {err}") from err
    if not isinstance(state, dict) or "version" not in state:
        raise CheckpointError(f"{path} is not an ofasys_fs checkpoint (no 'version' key)")
    if state["version"] > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {state['version']}; this ofasys_fs reads up to {CHECKPOINT_VERSION}"
        )
    return state
