"""Multi-task scheduling: which task a micro-step uses is a pure function of (seed, update, micro-step).

Every rank computes the same schedule without communication, and a resumed run continues it exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..configs import parse_sampling
from .rng import stable_hash


@dataclass(frozen=True)
class Sampling:
    """A parsed sampling strategy: proportional | temperature | round_robin | all | weights."""

    kind: str = "proportional"
    temperature: float = 1.0
    weights: tuple = ()  # one weight per task, in task order (kind "weights")

    @classmethod
    def parse(cls, spec: str, task_names: list[str]) -> "Sampling":
        """'proportional', 'round_robin', 'all', 'temperature=T', or 'weights=a:1,b:3' (configs.parse_sampling)."""
        kind, param = parse_sampling(spec or "proportional", task_names)
        if kind == "temperature":
            return cls(kind, temperature=param)
        if kind == "weights":
            return cls(kind, weights=tuple(param[name] for name in task_names))
        return cls(kind)


def task_probabilities(sampling: Sampling, sizes: list[int]) -> np.ndarray:
    """Requested share of micro-steps per task (what the logs compare the realised mix against).

    A task's loss `weight` is separate: it scales the loss, not how often the task is drawn.
    """
    n = len(sizes)
    if sampling.kind in ("round_robin", "all"):
        probs = np.ones(n)
    elif sampling.kind == "weights":
        probs = np.asarray(sampling.weights, dtype=float)
    else:
        t = sampling.temperature if sampling.kind == "temperature" else 1.0
        probs = np.asarray(sizes, dtype=float) ** (1.0 / t)
    return probs / probs.sum()


def task_for_step(sampling: Sampling, probs: np.ndarray, seed: int, update: int, micro_step: int,
                  update_freq: int) -> list[int]:
    """Task indices to run at (update, micro_step): one task, or every task for sampling 'all'."""
    n = len(probs)
    if sampling.kind == "all":
        return list(range(n))
    if sampling.kind == "round_robin":
        return [(update * update_freq + micro_step) % n]
    u = stable_hash(seed, "task-schedule", update, micro_step) / 2.0**64
    return [min(int(np.searchsorted(np.cumsum(probs), u, side="right")), n - 1)]


def epoch_permutation(seed: int, task: str, epoch: int, size: int, shuffle: bool = True) -> np.ndarray:
    """The row order of one task's epoch: a pure function of (seed, task, epoch)."""
    if not shuffle:
        return np.arange(size)
    return np.random.Generator(np.random.PCG64(stable_hash(seed, task, "epoch", epoch))).permutation(size)


def rank_slice(indices: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's share of a global batch of indices (strided, so ranks differ by one row at most)."""
    return indices[rank::world_size] if world_size > 1 else indices
