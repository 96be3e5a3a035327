"""The learning-rate schedules (fairseq names and semantics).

Schedules are pure functions of the update count, so a resumed run gets exactly the same learning
rates; the trainer calls `step_update(optimizer, num_updates)` before each optimizer step, with
`num_updates` the number of updates already completed.
"""
from __future__ import annotations

import abc
import dataclasses
import math
from typing import Optional

from ..contracts import LRScheduler
from ..registry import register_lr_scheduler


@dataclasses.dataclass
class WarmupConfig:
    lr: float = 1e-3  # peak learning rate, reached at the end of warmup
    warmup_updates: int = 0
    warmup_ratio: float = 0.0  # warmup as a fraction of total_num_update (OFA); exclusive with warmup_updates
    warmup_init_lr: float = 0.0  # learning rate at update 0 of the linear warmup


@dataclasses.dataclass
class DecayConfig(WarmupConfig):
    total_num_update: Optional[int] = None  # the trainer fills in max_update when not given
    end_learning_rate: float = 0.0


@dataclasses.dataclass
class PolynomialDecayConfig(DecayConfig):
    power: float = 1.0


@dataclasses.dataclass
class CosineConfig(DecayConfig):
    pass


@dataclasses.dataclass
class InverseSqrtConfig(WarmupConfig):
    pass


@dataclasses.dataclass
class FixedConfig(WarmupConfig):
    pass


class WarmupScheduler(LRScheduler):
    """Linear warmup from warmup_init_lr to lr over the warmup updates, then `decayed_lr`; stateless."""

    def __init__(self, cfg: Optional[WarmupConfig] = None):
        self.cfg = cfg = cfg or type(self).config_class()
        name = self.registered_name
        if cfg.lr < 0 or cfg.warmup_init_lr < 0:
            raise ValueError(f"{name}: lr and warmup_init_lr must be >= 0, got {cfg.lr} and {cfg.warmup_init_lr}")
        if cfg.warmup_updates < 0 or not 0.0 <= cfg.warmup_ratio < 1.0:
            raise ValueError(
                f"{name}: warmup_updates must be >= 0 and warmup_ratio in [0, 1); "
                f"got {cfg.warmup_updates} and {cfg.warmup_ratio}"
            )
        if cfg.warmup_updates > 0 and cfg.warmup_ratio > 0:
            raise ValueError(f"{name}: set warmup_updates or warmup_ratio, not both")
        total = getattr(cfg, "total_num_update", None)
        if total is not None and total <= 0:
            raise ValueError(f"{name}: total_num_update must be > 0, got {total}")
        if cfg.warmup_ratio > 0 and total is None:
            raise ValueError(f"{name}: warmup_ratio needs total_num_update (set it, or max_update in the trainer)")
        self.warmup_updates = int(cfg.warmup_ratio * total) if cfg.warmup_ratio > 0 else cfg.warmup_updates

    def lr_at(self, num_updates: int) -> float:
        if num_updates < self.warmup_updates:
            fraction = num_updates / self.warmup_updates
            return self.cfg.warmup_init_lr + (self.cfg.lr - self.cfg.warmup_init_lr) * fraction
        return self.decayed_lr(num_updates)

    def decayed_lr(self, num_updates: int) -> float:
        """Learning rate from the end of warmup on; the default keeps it fixed at lr."""
        return self.cfg.lr

    def state_dict(self) -> dict:
        """Empty: the schedule is a function of num_updates, which the trainer checkpoints."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(
                f"{self.registered_name}: the lr scheduler is stateless and expects an empty state, "
                f"got keys {sorted(state)}"
            )


class DecayScheduler(WarmupScheduler):
    """Decay from lr at the end of warmup to end_learning_rate at total_num_update, then flat."""

    def __init__(self, cfg: Optional[DecayConfig] = None):
        super().__init__(cfg)
        cfg = self.cfg
        if cfg.total_num_update is None:
            raise ValueError(
                f"{self.registered_name}: total_num_update is required (the trainer sets it to max_update)"
            )
        if cfg.total_num_update <= self.warmup_updates:
            raise ValueError(
                f"{self.registered_name}: total_num_update ({cfg.total_num_update}) must exceed "
                f"the warmup updates ({self.warmup_updates})"
            )
        if cfg.end_learning_rate < 0:
            raise ValueError(
                f"{self.registered_name}: end_learning_rate must be >= 0, got {cfg.end_learning_rate}"
            )

    def decayed_lr(self, num_updates: int) -> float:
        if num_updates >= self.cfg.total_num_update:
            return self.cfg.end_learning_rate
        progress = (num_updates - self.warmup_updates) / (self.cfg.total_num_update - self.warmup_updates)
        return self.cfg.end_learning_rate + (self.cfg.lr - self.cfg.end_learning_rate) * self.shape(progress)

    @abc.abstractmethod
    def shape(self, progress: float) -> float:
        """Fraction of the (lr - end_learning_rate) range left at `progress` in [0, 1) of the decay."""


@register_lr_scheduler("polynomial_decay", dataclass=PolynomialDecayConfig)
class PolynomialDecay(DecayScheduler):
    """fairseq's polynomial_decay: (1 - progress) ** power after warmup (power=1 is linear)."""

    def __init__(self, cfg: Optional[PolynomialDecayConfig] = None):
        super().__init__(cfg)
        if self.cfg.power <= 0:
            raise ValueError(f"polynomial_decay: power must be > 0, got {self.cfg.power}")

    def shape(self, progress: float) -> float:
        return (1.0 - progress) ** self.cfg.power


@register_lr_scheduler("cosine", dataclass=CosineConfig)
class Cosine(DecayScheduler):
    """Half a cosine from lr to end_learning_rate after warmup (one period, no restarts)."""

    def shape(self, progress: float) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * progress))


@register_lr_scheduler("inverse_sqrt", dataclass=InverseSqrtConfig)
class InverseSqrt(WarmupScheduler):
    """fairseq's inverse_sqrt: after warmup, lr * sqrt(warmup_updates / num_updates)."""

    def decayed_lr(self, num_updates: int) -> float:
        return self.cfg.lr * math.sqrt(max(self.warmup_updates, 1) / max(num_updates, 1))


@register_lr_scheduler("fixed", dataclass=FixedConfig)
class Fixed(WarmupScheduler):
    """Constant lr after an optional linear warmup."""
