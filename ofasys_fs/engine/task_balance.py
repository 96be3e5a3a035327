"""Per-task loss weights set from each task's loss scale (Trainer option task_weighting=loss_scale).

Tasks with long or hard targets (boxes, captions) keep a higher loss per token than closed-set answers; with
`loss_scale` each task's loss is multiplied by the mean of every task's running loss per unit of sample size
divided by its own, so that the updates of every task carry gradients of one loss scale (docs/multitask.md).
"""
from __future__ import annotations

from typing import Iterable, Optional

DECAY = 0.98  # running mean over about 50 of a task's batches


class LossScaleWeights:
    """Running loss per unit of sample size of each task, and the loss weight that equalises them."""

    def __init__(self, running: Optional[dict[str, float]] = None):
        self.running = dict(running or {})

    def weight(self, task: str) -> float:
        """The mean running loss over tasks / this task's (1 until the task has been trained on)."""
        own = self.running.get(task)
        if not own:
            return 1.0
        return sum(self.running.values()) / len(self.running) / own

    def update(self, logs: Iterable[tuple[str, dict]]) -> None:
        """Fold in one update's logging outputs (task, {"loss": sum, "sample_size": n}), unweighted."""
        for task, log in logs:
            if not log.get("sample_size"):
                continue
            value = log["loss"] / log["sample_size"]
            previous = self.running.get(task)
            self.running[task] = value if previous is None else DECAY * previous + (1 - DECAY) * value

    def state_dict(self) -> dict[str, float]:
        return dict(self.running)
