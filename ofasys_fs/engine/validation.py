"""The validation loss of a task: its valid rows batched as training validates, through its criterion."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable

import torch

from ..data.encode import RowEncoder
from ..devices import move_to
from .batches import valid_loader


@torch.no_grad()
def valid_loss(model: torch.nn.Module, criterion: torch.nn.Module, task: Any, encoder: RowEncoder, cfg: Any,
               autocast: Callable = nullcontext) -> dict[str, float]:
    """The criterion's reduced statistics (loss, nll_loss, ppl, accuracy, ...) on the task's valid split,
    batched as training validates (`cfg`: the TrainConfig; batch_size, max_valid_samples)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logs = []
    try:
        for sample in valid_loader(task, encoder, cfg):
            sample = move_to({**sample, "task": task.name, "task_weight": 1.0}, device)
            with autocast():
                logs.append(criterion(model, sample)[2])
    finally:
        model.train(was_training)
    return type(criterion).reduce_metrics(logs)
