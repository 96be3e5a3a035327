"""Multi-task scheduling: which task a micro-step uses is a pure function of (seed, update, micro-step).

Every rank computes the same schedule without communication, and a resumed run continues it exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..registry import did_you_mean
from ..rng import stable_hash

SAMPLING_KINDS = ("proportional", "round_robin", "all", "temperature", "weights")


def parse_sampling(spec: str, task_names=None) -> tuple[str, Any]:
    """Parse a task-sampling strategy -> (kind, param); param is None, a temperature, or {task: weight}.

    Forms: "proportional", "round_robin", "all", "temperature=T" (T > 0), "weights=a:1,b:3".
    With `task_names`, the weights must name exactly those tasks.
    """
    text = str(spec).strip()
    kind, has_param, param = text.partition("=")
    kind = kind.strip()
    if kind not in SAMPLING_KINDS:
        raise ValueError(
            f'unknown sampling strategy "{text}".{did_you_mean(kind, SAMPLING_KINDS)} '
            'Expected proportional, round_robin, all, temperature=T or weights=TASK:W,TASK:W'
        )
    if kind in ("proportional", "round_robin", "all"):
        if has_param:
            raise ValueError(f'sampling strategy "{kind}" takes no parameter, got "{text}"')
        return kind, None
    if not param.strip():
        raise ValueError(f'sampling "{text}" needs a parameter, e.g. "temperature=2" or "weights=a:1,b:3"')
    if kind == "temperature":
        try:
            temperature = float(param)
        except ValueError:
            raise ValueError(f'sampling "{text}": the temperature must be a number, e.g. "temperature=2"') from None
        if not temperature > 0:
            raise ValueError(f'sampling "{text}": the temperature must be > 0')
        return kind, temperature
    return kind, _parse_task_weights(text, param, task_names)


def _parse_task_weights(text: str, param: str, task_names) -> dict[str, float]:
    weights: dict[str, float] = {}
    for item in param.split(","):
        name, colon, number = (part.strip() for part in item.partition(":"))
        if not name or not colon:
            raise ValueError(f'sampling "{text}": expected TASK:WEIGHT pairs joined by commas, got "{item.strip()}"')
        if name in weights:
            raise ValueError(f'sampling "{text}": task "{name}" is given twice')
        try:
            weights[name] = float(number)
        except ValueError:
            raise ValueError(f'sampling "{text}": task "{name}" needs a number as weight, got "{number}"') from None
        if not 0 <= weights[name] < math.inf:
            raise ValueError(f'sampling "{text}": the weight of task "{name}" must be >= 0 and finite')
    if not any(weights.values()):
        raise ValueError(f'sampling "{text}": at least one task weight must be > 0')
    if task_names is not None:
        for name in weights:
            if name not in task_names:
                raise ValueError(
                    f'sampling "{text}": no task named "{name}".{did_you_mean(name, task_names)} '
                    f"Tasks: {', '.join(task_names)}"
                )
        missing = [name for name in task_names if name not in weights]
        if missing:
            raise ValueError(f'sampling "{text}": give every task a weight; missing: {", ".join(missing)}')
    return weights


@dataclass(frozen=True)
class Sampling:
    """A parsed sampling strategy: proportional | temperature | round_robin | all | weights."""

    kind: str = "proportional"
    temperature: float = 1.0
    weights: tuple = ()  # one weight per task, in task order (kind "weights")

    @classmethod
    def parse(cls, spec: str, task_names: list[str]) -> "Sampling":
        """'proportional', 'round_robin', 'all', 'temperature=T', or 'weights=a:1,b:3' (see parse_sampling)."""
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
