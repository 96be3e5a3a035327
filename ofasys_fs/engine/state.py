"""Checkpoint contents (DESIGN §8): assemble them from the training objects, restore the objects from them,
and manage the files in save_dir (checkpoint_last / _best / _<update>, keep_last_n).

Every value is a tensor or a plain Python value, so checkpoints load with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
from collections import OrderedDict
from typing import Any, Optional

import torch
from torch import nn

from .. import __version__
from ..vocab import Vocabulary
from .checkpoint import CHECKPOINT_VERSION, CheckpointError, atomic_write, save_checkpoint
from .ema import EMA

NUMBERED = re.compile(r"checkpoint_(\d+)\.pt")


def rng_state() -> dict:
    """The global torch RNG states (dropout, drop-path); data randomness is stateless and needs none."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def model_description(model: nn.Module, data_cfg: Any) -> dict:
    """What rebuilds the model and its preprocessing from the checkpoint alone (OFASys.from_pretrained)."""
    return {
        "model": dataclasses.asdict(model.cfg),
        "vocab_size": model.vocab_size,
        "adaptor_names": list(model.adaptor_names),
        "data": dataclasses.asdict(data_cfg),
    }


def build_state(*, model: nn.Module, ema: Optional[EMA], optimizer: torch.optim.Optimizer, lr_scheduler: Any,
                sampler: dict, vocab: Vocabulary, config: dict, tasks: list, user_dirs: list[str],
                train_meta: dict) -> dict:
    """The checkpoint dict with DESIGN §8's keys; `config` = plain dicts (train config + model_description)."""
    state = {
        "version": CHECKPOINT_VERSION,
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "sampler": sampler,
        "rng": rng_state(),
        "vocab": vocab.to_dict(),
        "config": config,
        "tasks": [task.to_dict() for task in tasks],
        "user_dirs": list(user_dirs),
        "train_meta": {**train_meta, "ofasys_fs_version": __version__, "torch_version": str(torch.__version__)},
    }
    check_plain(state, "checkpoint")
    return state


PLAIN_TYPES = (dict, OrderedDict, list, tuple, str, int, float, bool, type(None))  # what weights_only loads


def check_plain(value: Any, where: str) -> None:
    """Raise naming the key when a value is not a tensor or a plain Python value (a weights_only load would
    refuse the whole file); exact types, since e.g. torch's version string is a str subclass it refuses."""
    if isinstance(value, torch.Tensor):
        return
    if type(value) not in PLAIN_TYPES:
        raise CheckpointError(f"{where} is a {type(value).__qualname__}; checkpoints hold only tensors and plain "
                              f"Python values (weights_only loading)")
    if isinstance(value, dict):
        for key, item in value.items():
            check_plain(key, f"{where} key {key!r}")
            check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")


def inference_weights(state: dict) -> dict:
    """The weights to run: the EMA shadow when the run validated (and picked _best) with EMA, else `model`."""
    if state.get("train_meta", {}).get("best_weights") == "ema" and state.get("ema"):
        return state["ema"]["shadow"]
    return state["model"]


def check_vocab(state: dict, vocab: Vocabulary, path: str) -> None:
    """Refuse a checkpoint whose vocabulary differs from this run's (token ids would mean other things)."""
    stored = state["vocab"]
    if stored.get("hash") != vocab.hash:
        raise CheckpointError(
            f"{path} was trained with another vocabulary (hash {str(stored.get('hash'))[:12]}, config "
            f"{stored.get('config')}) than this run (hash {vocab.hash[:12]}, config {vocab.config.to_dict()}); "
            f"set the vocab options (num_bins, num_codes, tokenizer) to the checkpoint's values"
        )


def load_model_weights(model: nn.Module, weights: dict, path: str, strict: bool) -> tuple[list, list]:
    """Load weights; shape mismatches are always an error, missing/unexpected keys only when strict."""
    current = model.state_dict()
    mismatched = [f"{key} {list(value.shape)} vs model {list(current[key].shape)}"
                  for key, value in weights.items() if key in current and current[key].shape != value.shape]
    if mismatched:
        raise CheckpointError(
            f"{path}: {len(mismatched)} weights have other shapes than this model (another arch or vocab?): "
            f"{'; '.join(mismatched[:5])}"
        )
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{path} does not match this model: missing {missing[:8]}, unexpected {unexpected[:8]} (other tasks "
            f"or adaptors?). To start from its weights anyway, use --finetune-from-model {path} with a new save_dir"
        )
    return list(missing), list(unexpected)


@dataclasses.dataclass
class FinetuneReport:
    """What --finetune-from-model loaded: keys this model lacks in the file and keys the file has in excess."""

    path: str
    loaded: int
    missing: list[str]
    unexpected: list[str]

    def __str__(self) -> str:
        return (f"finetuning from {self.path}: loaded {self.loaded} tensors; {len(self.missing)} missing "
                f"(trained from scratch) {self.missing[:10]}; {len(self.unexpected)} unexpected (ignored) "
                f"{self.unexpected[:10]}")


def load_finetune(state: dict, path: str, model: nn.Module, vocab: Vocabulary) -> FinetuneReport:
    """Start from a checkpoint's weights, non-strict (new tasks may add adaptors); the vocab must match."""
    check_vocab(state, vocab, path)
    weights = inference_weights(state)
    missing, unexpected = load_model_weights(model, weights, path, strict=False)
    return FinetuneReport(path, len(weights) - len(unexpected), missing, unexpected)


def restore_training(state: dict, path: str, *, model: nn.Module, ema: Optional[EMA],
                     optimizer: torch.optim.Optimizer, lr_scheduler: Any, checkpoint_cfg: Any,
                     vocab: Vocabulary) -> dict:
    """Resume: model (strict), EMA, optimizer and scheduler unless reset; returns the train_meta to continue
    from (num_updates 0 with --reset-optimizer, as fairseq; sampler None with --reset-dataloader)."""
    check_vocab(state, vocab, path)
    load_model_weights(model, state["model"], path, strict=True)
    if ema is not None and state.get("ema"):
        ema.load_state_dict(state["ema"])
    elif ema is not None:
        ema.load_state_dict({"num_updates": 0, "shadow": model.state_dict()})
    meta = dict(state.get("train_meta") or {})
    if checkpoint_cfg.reset_optimizer:
        meta["num_updates"] = 0
    else:
        try:
            optimizer.load_state_dict(state["optimizer"])
        except ValueError as err:
            raise CheckpointError(
                f"{path}: the optimizer state does not fit this model's parameters ({err}); "
                f"resume with --reset-optimizer"
            ) from None
    if not checkpoint_cfg.reset_lr_scheduler:
        lr_scheduler.load_state_dict(state["lr_scheduler"])
    meta["sampler"] = None if checkpoint_cfg.reset_dataloader else state.get("sampler")
    if checkpoint_cfg.reset_meters:
        meta.pop("meters", None)
    return meta


def restore_path(checkpoint_cfg: Any) -> Optional[str]:
    """The checkpoint to resume from, or None for a fresh start.

    A bare file name is looked up in save_dir; the default checkpoint_last.pt may be absent (first run),
    any other name must exist.
    """
    name = checkpoint_cfg.restore_file
    path = name if os.path.dirname(name) else os.path.join(checkpoint_cfg.save_dir, name)
    if os.path.isfile(path):
        return path
    if name == "checkpoint_last.pt":
        return None
    raise CheckpointError(f"--restore-file {name}: {path} does not exist")


def write_checkpoints(state: dict, save_dir: str, names: list[str]) -> None:
    """Write `state` to the first name and copy it to the others, each file atomically."""
    first = os.path.join(save_dir, names[0])
    save_checkpoint(state, first)
    for name in names[1:]:
        with open(first, "rb") as source:
            atomic_write(os.path.join(save_dir, name), lambda target: shutil.copyfileobj(source, target))


def prune_numbered(save_dir: str, keep_last_n: int) -> None:
    """Delete all but the newest keep_last_n checkpoint_<update>.pt files (-1 keeps them all)."""
    if keep_last_n < 0:
        return
    numbered = sorted(
        (int(match.group(1)), name) for name in os.listdir(save_dir) if (match := NUMBERED.fullmatch(name))
    )
    for _, name in numbered[:max(len(numbered) - keep_last_n, 0)]:
        os.remove(os.path.join(save_dir, name))
