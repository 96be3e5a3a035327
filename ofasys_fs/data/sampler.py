"""Multi-task scheduling: which task a micro-step uses is a pure function of (seed, update, micro-step).

Every rank computes the same schedule without communication, and a resumed run continues it exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .rng import stable_hash


@dataclass(frozen=True)
class Sampling:
    """A parsed sampling strategy: proportional | temperature | round_robin | all | weights."""

    kind: str = "proportional"
    temperature: float = 1.0
    weights: tuple = ()

    @classmethod
    def parse(cls, spec: str, task_names: list[str]) -> "Sampling":
        """'proportional', 'round_robin', 'all', 'temperature=T', or 'weights=a:1,b:3'."""
        spec = (spec or "proportional").strip()
        kind, _, arg = spec.partition("=")
        if kind in ("proportional", "round_robin", "all") and not arg:
            return cls(kind)
        if kind == "temperature":
            try:
                temperature = float(arg)
            except ValueError:
                temperature = -1.0
            if not temperature > 0:
                raise ValueError(f"sampling {spec!r}: temperature must be a positive number, e.g. temperature=2")
            return cls("temperature", temperature=temperature)
        if kind == "weights":
            return cls("weights", weights=tuple(_parse_weights(spec, arg, task_names)))
        raise ValueError(
            f"unknown sampling {spec!r}; expected proportional, round_robin, all, temperature=T "
            f"or weights=task:w,task:w"
        )


def _parse_weights(spec: str, arg: str, task_names: list[str]) -> list[float]:
    given = {}
    for item in filter(None, arg.split(",")):
        name, _, value = item.partition(":")
        if name not in task_names:
            raise ValueError(f"sampling {spec!r}: no task named {name!r}; tasks are {task_names}")
        try:
            given[name] = float(value)
        except ValueError:
            raise ValueError(f"sampling {spec!r}: weight of {name!r} must be a number, got {value!r}") from None
    missing = [n for n in task_names if n not in given]
    if missing or not all(w >= 0 for w in given.values()) or not sum(given.values()) > 0:
        raise ValueError(f"sampling {spec!r}: give a non-negative weight to every task {task_names}, not all zero")
    return [given[n] for n in task_names]


def task_probabilities(sampling: Sampling, sizes: list[int], task_weights: list[float]) -> np.ndarray:
    """Requested share of micro-steps per task (what the logs compare the realised mix against)."""
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


def num_batches(size: int, batch_size: int) -> int:
    return max(1, math.ceil(size / batch_size))
