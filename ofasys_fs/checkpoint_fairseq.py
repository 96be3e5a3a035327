"""Reading a fairseq checkpoint written by the `ofasys` fairseq task (ofasys_fs/fairseq_plugin, docs/fairseq.md)
without fairseq: the weights are the GeneralistModel's own state dict under "model", and the task state keeps
under TASK_STATE_KEY what an ofasys_fs checkpoint keeps for inference (vocab, tasks, config, user_dirs)."""
from __future__ import annotations

import argparse
from typing import Any

from .errors import CheckpointError

TASK_STATE_KEY = "ofasys_fs"  # in a fairseq checkpoint's "task_state"
PAYLOAD_KEYS = ("vocab", "tasks", "config", "user_dirs")  # what the task state holds (docs/design.md §14)
# Besides tensors and plain values, fairseq checkpoints may hold argparse.Namespace (legacy configs): harmless to
# build, so a weights_only load allows it.
SAFE_GLOBALS = (argparse.Namespace,)


def is_fairseq_checkpoint(state: Any) -> bool:
    """Whether a loaded dict has fairseq's checkpoint layout (no ofasys_fs "version", a "cfg" or "args")."""
    return isinstance(state, dict) and "version" not in state and ("cfg" in state or "args" in state)


def inference_payload(state: dict) -> dict:
    """The ofasys_fs part of an ofasys_fs checkpoint, as the fairseq task stores it in its task state."""
    return {key: state[key] for key in PAYLOAD_KEYS}


def from_fairseq(state: dict, path: str) -> dict:
    """The keys of an ofasys_fs checkpoint that inference reads (model weights, vocab, tasks, config; all but
    "version") from a fairseq one; a CheckpointError naming what is missing when the `ofasys` task did not write it."""
    payload = (state.get("task_state") or {}).get(TASK_STATE_KEY)
    if not isinstance(payload, dict) or any(key not in payload for key in PAYLOAD_KEYS):
        raise CheckpointError(f"{path} is a fairseq checkpoint, but not of the ofasys task (--task ofasys with "
                              f"--user-dir ofasys_fs/fairseq_plugin): its task state has no complete "
                              f"{TASK_STATE_KEY!r} entry with {list(PAYLOAD_KEYS)}")
    history = state.get("optimizer_history")
    last = history[-1] if isinstance(history, list) and history and isinstance(history[-1], dict) else {}
    return {**payload, "model": state.get("model"), "ema": None,
            "train_meta": {"num_updates": last.get("num_updates", 0), "best_weights": "model",
                           "converted_from": "fairseq"}}
