"""Checkpoint contents (docs/design.md §14): assemble them from the training objects, restore the objects from them
(`TrainerCheckpoints`: the Trainer's side), and manage the files in save_dir (checkpoint_last / _best /
_<update>, keep_last_n, the temp files of interrupted writes).

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
from ..checkpoint import (
    CHECKPOINT_VERSION,
    atomic_write,
    inference_weights,
    load_checkpoint,
    model_description,
    save_checkpoint,
)
from ..config import config_to_dict
from ..errors import CheckpointError
from ..image_tokenizers.files import tokenizer_payload
from ..models.config import ModelConfig
from ..models.generalist import with_continuous_layers
from ..models.task_batch_norm import is_task_statistic
from ..registry import imported_user_dirs
from ..vocab import Vocabulary, VocabConfig
from .ema import EMA

NUMBERED = re.compile(r"checkpoint_(\d+)\.pt")
STALE_TEMP = re.compile(r"checkpoint.*\.pt\..+\.tmp")  # what atomic_write leaves when killed mid-write


def rng_state() -> dict:
    """This process's torch RNG states (dropout, drop-path); data randomness is stateless and needs none."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def checkpoint_rng(per_rank: list[dict]) -> dict:
    """The checkpoint's `rng`: rank 0's states at the top (as a one-process run writes them) and every
    rank's under "ranks", so that each rank of a resumed run continues its own dropout stream."""
    return {**per_rank[0], "ranks": list(per_rank)}


def set_rng_state(state: dict, rank: int = 0, world_size: int = 1) -> bool:
    """Restore this rank's RNG from a checkpoint's `rng`; False when the checkpoint has none for this rank
    (it was written by another number of ranks; the caller reseeds)."""
    ranks = state.get("ranks")
    if ranks is not None and len(ranks) == world_size:
        state = ranks[rank]
    elif world_size > 1 or (ranks is not None and len(ranks) != 1):
        return False
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return True


def build_state(*, model_state: dict, ema: Optional[EMA], optimizer_state: dict, lr_scheduler: Any,
                sampler: dict, rng: dict, vocab: Vocabulary, config: dict, tasks: list, user_dirs: list[str],
                train_meta: dict, image_tokenizers: Optional[dict] = None) -> dict:
    """The checkpoint dict with docs/design.md §14's keys; `config` = plain dicts (train config + model_description),
    `model_state`/`optimizer_state` = full state dicts, `rng` = `checkpoint_rng(...)`, `image_tokenizers` = the
    tokenizers of image_code slots (stored by content hash, so that inference needs no path)."""
    state = {
        "version": CHECKPOINT_VERSION,
        "model": model_state,
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer_state,
        "lr_scheduler": lr_scheduler.state_dict(),
        "sampler": sampler,
        "rng": rng,
        "vocab": vocab.to_dict(),
        "config": config,
        "tasks": [task.to_dict() for task in tasks],
        "user_dirs": list(user_dirs),
        "train_meta": {**train_meta, "ofasys_fs_version": __version__, "torch_version": str(torch.__version__)},
        "image_tokenizers": {tokenizer.content_hash: tokenizer_payload(tokenizer)
                             for tokenizer in (image_tokenizers or {}).values()},
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


def check_vocab(state: dict, vocab: Vocabulary, path: str) -> None:
    """Refuse a checkpoint whose vocabulary differs from this run's (token ids would mean other things)."""
    stored = state["vocab"]
    if stored.get("hash") != vocab.hash:
        raise CheckpointError(
            f"{path} was trained with another vocabulary (hash {str(stored.get('hash'))[:12]}, config "
            f"{stored.get('config')}) than this run (hash {vocab.hash[:12]}, config {vocab.config.to_dict()}); "
            f"set the vocab options (num_bins, num_codes, tokenizer) to the checkpoint's values"
        )


def check_image_tokenizers(state: dict, ours: dict, path: str) -> None:
    """Refuse to resume a run whose image tokenizers have other content (its codes would mean other images)."""
    recorded = state["config"]["data"].get("image_tokenizers") or {}
    if recorded != ours:
        raise CheckpointError(f"{path} was trained with other image tokenizers ({recorded}) than this run ({ours}); "
                              f"resume with the same tokenizer files, or start a new save_dir")


def load_model_weights(model: nn.Module, weights: dict, path: str, strict: bool) -> tuple[list, list]:
    """Load weights; shape mismatches are always an error (but BatchNorm statistics per task, which take the
    stored tasks), missing/unexpected keys only when strict."""
    current = model.state_dict()
    mismatched = [f"{key} {list(value.shape)} vs model {list(current[key].shape)}"
                  for key, value in weights.items()
                  if key in current and current[key].shape != value.shape and not is_task_statistic(key)]
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
    weights = with_continuous_layers(inference_weights(state), model.state_dict())
    try:
        missing, unexpected = load_model_weights(model, weights, path, strict=False)
    except CheckpointError as err:
        arch = (state["config"].get("model") or {}).get("arch")
        raise CheckpointError(f"{err}. The checkpoint's model is arch {arch!r} with its own sizes: leave out --arch "
                              f"(and the sizes) to fine-tune that model") from None
    return FinetuneReport(path, len(weights) - len(unexpected), missing, unexpected)


def restore_weights(state: dict, path: str, model: nn.Module, vocab: Vocabulary) -> None:
    """Resume, first half (before the model is wrapped or sharded): the weights, strictly; the vocab must match."""
    check_vocab(state, vocab, path)
    load_model_weights(model, state["model"], path, strict=True)


def restore_training(state: dict, path: str, *, model: nn.Module, ema: Optional[EMA],
                     optimizer: torch.optim.Optimizer, lr_scheduler: Any, checkpoint_cfg: Any,
                     optimizer_state: Optional[dict] = None) -> dict:
    """Resume, second half: EMA, optimizer (`optimizer_state`: the checkpoint's, made local to this rank) and
    scheduler unless reset; returns the train_meta to continue from (num_updates 0 with --reset-optimizer,
    as fairseq; sampler None with --reset-dataloader)."""
    if ema is not None and state.get("ema"):
        ema.load_state_dict(state["ema"])
    elif ema is not None:
        ema.load_state_dict({"num_updates": 0, "shadow": model.state_dict()})
    meta = dict(state.get("train_meta") or {})
    if checkpoint_cfg.reset_optimizer:
        meta["num_updates"] = 0
    else:
        try:
            optimizer.load_state_dict(state["optimizer"] if optimizer_state is None else optimizer_state)
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
    if name == "checkpoint_last.pt" and not os.path.exists(path):
        return None
    raise CheckpointError(f"--restore-file {name}: {path} " + ("is a folder; expected a checkpoint file"
                                                                if os.path.isdir(path) else "does not exist"))


def write_checkpoints(state: dict, save_dir: str, names: list[str]) -> None:
    """Write `state` to the first name and copy it to the others, each file atomically."""
    first = os.path.join(save_dir, names[0])
    save_checkpoint(state, first)
    for name in names[1:]:
        with open(first, "rb") as source:
            atomic_write(os.path.join(save_dir, name), lambda target: shutil.copyfileobj(source, target))


def remove_stale_temp_files(save_dir: str) -> list[str]:
    """Delete the temp files of checkpoint writes that were killed before their rename; returns their names."""
    if not os.path.isdir(save_dir):
        return []
    stale = sorted(name for name in os.listdir(save_dir) if STALE_TEMP.fullmatch(name))
    for name in stale:
        os.remove(os.path.join(save_dir, name))
    return stale


def kept_checkpoints(save_dir: str, written: set[str]) -> list[str]:
    """The checkpoints of `written` still in save_dir (pruning removes old numbered ones): last, best, then the
    numbered ones by update."""
    kept = [name for name in written if os.path.isfile(os.path.join(save_dir, name))]
    order = {"checkpoint_last.pt": -2, "checkpoint_best.pt": -1}
    return sorted(kept, key=lambda name: order.get(name, int(NUMBERED.fullmatch(name).group(1))
                                                   if NUMBERED.fullmatch(name) else 0))


def prune_numbered(save_dir: str, keep_last_n: int) -> None:
    """Delete all but the newest keep_last_n checkpoint_<update>.pt files (-1 keeps them all)."""
    if keep_last_n < 0:
        return
    numbered = sorted(
        (int(match.group(1)), name) for name in os.listdir(save_dir) if (match := NUMBERED.fullmatch(name))
    )
    for _, name in numbered[:max(len(numbered) - keep_last_n, 0)]:
        os.remove(os.path.join(save_dir, name))


class TrainerCheckpoints:
    """The Trainer's side of checkpoints: what it restores before and after wrapping the model, and the state
    it saves. A mixin of engine.trainer.Trainer, whose attributes (cfg, model, vocab, dist, strategy,
    optimizer, lr_scheduler, ema, scaler, batches, logger, ...) it reads."""

    finetune_state: Optional[dict] = None  # the --finetune-from-model checkpoint, loaded once

    def finetune_vocabulary(self) -> Vocabulary:
        """The run's vocabulary. With --finetune-from-model, a run that names no arch fine-tunes the checkpoint's
        model (its config, with the model options the run sets on top, e.g. drop_path_rate), and a run that sets
        no vocab options uses its vocabulary, so that naming the checkpoint is enough to start from it (e.g. one
        converted from OFA's weights); a run that names an arch builds that arch, whose weights must fit."""
        path = self.cfg.checkpoint.finetune_from_model
        if not path:
            return Vocabulary.from_config(self.cfg.vocab)
        self.finetune_state = load_checkpoint(path, for_inference=True)  # ours, or a fairseq one
        stored = self.finetune_state["config"].get("model")
        defaults = dataclasses.asdict(ModelConfig())
        given = {key: value for key, value in dataclasses.asdict(self.cfg.model).items() if value != defaults[key]}
        if "arch" not in given and isinstance(stored, dict):
            try:
                model_cfg = ModelConfig(**{**stored, "image_backbone_weights": None, **given})
            except TypeError as err:
                raise CheckpointError(f"{path}: its model config does not fit this ofasys_fs version: {err}") from err
            self.cfg = dataclasses.replace(self.cfg, model=model_cfg)
        if self.cfg.vocab != VocabConfig():
            return Vocabulary.from_config(self.cfg.vocab)
        try:
            vocab = Vocabulary.from_dict(self.finetune_state["vocab"])
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{path}: its stored vocabulary cannot be rebuilt: {err}") from err
        self.cfg = dataclasses.replace(self.cfg, vocab=vocab.config)
        return vocab

    def load_initial_weights(self) -> Optional[tuple[dict, str]]:
        """Before the model is wrapped: the weights of the restore file when it exists (returns it and its
        path, to restore the rest later), else --finetune-from-model's, else none (from scratch)."""
        ckpt_cfg = self.cfg.checkpoint
        path = restore_path(ckpt_cfg)
        if path is not None:
            state = load_checkpoint(path)
            restore_weights(state, path, self.model, self.vocab)
            check_image_tokenizers(state, self.data_cfg.image_tokenizers, path)
            return state, path
        if ckpt_cfg.finetune_from_model:
            self.finetune_report = load_finetune(self.finetune_state, ckpt_cfg.finetune_from_model, self.model,
                                                 self.vocab)
            self.say(str(self.finetune_report))
        return None

    def restore_training(self, resumed: Optional[tuple[dict, str]]) -> dict:
        """After the optimizer exists: the rest of a resumed run's state. Returns the train_meta to continue from."""
        if resumed is None:
            return {}
        state, path = resumed
        ckpt_cfg = self.cfg.checkpoint
        optimizer_state = None if ckpt_cfg.reset_optimizer else \
            self.strategy.local_optimizer_state(self.optimizer, state["optimizer"])
        meta = restore_training(
            state, path, model=self.model, ema=self.ema, optimizer=self.optimizer, lr_scheduler=self.lr_scheduler,
            checkpoint_cfg=ckpt_cfg, optimizer_state=optimizer_state,
        )
        self.say(f"resuming from {path} at update {meta.get('num_updates', 0)}")
        return {**meta, "rng": state["rng"]}

    def checkpoint(self) -> Optional[dict]:
        """The full training state (docs/design.md §14 keys) on rank 0, None on the other ranks. Gathers every rank's
        RNG (and FSDP's shards): call it on every rank."""
        rng = checkpoint_rng(self.dist.all_gather_object(rng_state()))
        model_state = self.strategy.model_state(self.model)
        optimizer_state = self.strategy.optimizer_state(self.optimizer)
        if not self.dist.world.is_main:
            return None
        config = {"train": config_to_dict(self.cfg), **model_description(self.model, self.data_cfg)}
        train_meta = {
            "num_updates": self.num_updates,
            "epoch": self.batches.completed_epochs + 1,
            "best": self.best,
            "best_checkpoint_metric": self.cfg.checkpoint.best_checkpoint_metric,
            "validations_without_improvement": self.validations_without_improvement,
            "best_weights": "ema" if self.ema is not None else "model",
            "best_source": "validation" if self.validates() else "the last checkpoint: no validation data",
            "meters": self.logger.state_dict(),
        }
        if self.scaler is not None:
            train_meta["grad_scaler"] = self.scaler.state_dict()
        if self.task_balance is not None:
            train_meta["task_loss_scale"] = self.task_balance.state_dict()
        return build_state(
            model_state=model_state, ema=self.ema, optimizer_state=optimizer_state, lr_scheduler=self.lr_scheduler,
            sampler={"num_updates": self.num_updates, "tasks": self.batches.state_dict()}, rng=rng, vocab=self.vocab,
            config=config, tasks=self.tasks, user_dirs=imported_user_dirs(), train_meta=train_meta,
            image_tokenizers=self.image_tokenizers,
        )
