"""Exponential moving average of model weights (fairseq/OFA `--ema`), kept in fp32 beside the model."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError


class EMA:
    """fp32 shadow copy of a model: parameters averaged each update, buffers copied as they are.

    shadow = decay * shadow + (1 - decay) * param, with decay fixed, or min(decay, (1 + n) / (10 + n))
    after n updates when `warmup` is on (early averages follow the model instead of its random init).
    Build it after the model is on its device, from the unwrapped model (not the DDP wrapper).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = False):
        if not 0.0 <= decay <= 1.0:
            raise ConfigError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay, self.warmup, self.num_updates = decay, warmup, 0
        self.shadow: dict[str, torch.Tensor] = {}  # keyed like model.state_dict(), so it loads into the model
        self.param_names: list[str] = []  # one name per distinct parameter (tied weights share a shadow)
        self.buffer_names: list[str] = []
        averaged: dict[int, torch.Tensor] = {}
        for name, value in model.state_dict(keep_vars=True).items():
            if isinstance(value, nn.Parameter):
                if id(value) not in averaged:
                    averaged[id(value)] = value.detach().float().clone()
                    self.param_names.append(name)
                self.shadow[name] = averaged[id(value)]
            else:
                self.shadow[name] = value.detach().clone()
                self.buffer_names.append(name)

    def decay_at(self, num_updates: int) -> float:
        """Decay used for the update after `num_updates` earlier EMA updates."""
        if self.warmup:
            return min(self.decay, (1 + num_updates) / (10 + num_updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (call after each optimizer step)."""
        current = self.matching_state(model)
        weight = 1.0 - self.decay_at(self.num_updates)
        for name in self.param_names:
            shadow = self.shadow[name]
            shadow.lerp_(current[name].detach().to(shadow.device, torch.float32), weight)
        for name in self.buffer_names:
            self.shadow[name].copy_(current[name])
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's weights with the average (cast to the model's dtypes)."""
        current = self.matching_state(model)
        for name, value in self.shadow.items():
            current[name].copy_(value)

    @contextlib.contextmanager
    def apply_to(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block the model holds the averaged weights (e.g. for validation); restored after."""
        backup = {name: value.detach().clone() for name, value in model.state_dict().items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                current = model.state_dict(keep_vars=True)
                for name, value in backup.items():
                    current[name].copy_(value)

    def state_dict(self) -> dict:
        """{"num_updates": int, "shadow": fp32 weights keyed like model.state_dict()}."""
        return {"num_updates": self.num_updates, "shadow": dict(self.shadow)}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore from `state_dict()`; the shadow must match this model's keys and shapes."""
        loaded = state.get("shadow")
        if not isinstance(loaded, dict) or "num_updates" not in state:
            raise CheckpointError(f"EMA state must have 'num_updates' and a 'shadow' dict; got keys {sorted(state)}")
        self.check_keys(loaded.keys(), "the EMA state being loaded")
        for name, value in loaded.items():
            if value.shape != self.shadow[name].shape:
                raise CheckpointError(
                    f"EMA state: {name} has shape {list(value.shape)}, "
                    f"the model has {list(self.shadow[name].shape)}"
                )
            self.shadow[name].copy_(value)
        self.num_updates = int(state["num_updates"])

    def matching_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        current = model.state_dict(keep_vars=True)
        self.check_keys(current.keys(), "the model")
        return current

    def check_keys(self, keys, what: str) -> None:
        missing, unexpected = set(self.shadow) - set(keys), set(keys) - set(self.shadow)
        if missing or unexpected:
            raise CheckpointError(
                f"EMA weights do not match {what}: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]} "
                f"(was the EMA built from the same, unwrapped model?)"
            )
