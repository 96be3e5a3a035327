"""BatchNorm with running statistics per task: a generalist trains on one task per batch, so in training each
task's images are normalised by that task's own statistics; evaluating with the mixture of all tasks' statistics
(plain BatchNorm's running averages) shifts every task's features away from what it was trained on."""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn


class TaskBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d (its parameters, its running statistics over all batches) plus a running mean and variance
    for every task registered with `add_tasks`. Training normalises by the batch, as BatchNorm does, and updates
    the shared statistics and those of the batch's task; evaluation uses the task's statistics, or the shared ones
    for a task without any (unregistered, or no training batch yet). Under torch.distributed the batch statistics
    are those of every rank's rows (the ranks of a step train one task), so that N ranks train as one process with
    their global batch. With `local_kernel` one process normalises through BatchNorm's own kernel, so that its
    outputs are plain BatchNorm's to the bit (image_resnet: OFA's ResNet), and sums the task's statistics apart
    without gradients; without it the statistics are always summed here, in fp32 (the stem)."""

    def __init__(self, channels: int, local_kernel: bool = False):
        super().__init__(channels)
        self.local_kernel = local_kernel
        self.tasks: list[str] = []
        self.register_buffer("task_names", encode_names([]))  # a tensor, as every value of a checkpoint's weights
        self.register_buffer("task_mean", torch.zeros(0, channels))
        self.register_buffer("task_var", torch.ones(0, channels))
        self.register_buffer("task_batches", torch.zeros(0, dtype=torch.long))

    def add_tasks(self, names: Iterable[str]) -> None:
        """Statistics slots for the tasks not yet registered (before training: data-parallel wrappers fix the
        buffers they keep in step when they wrap the model)."""
        new = [name for name in dict.fromkeys(names) if name not in self.tasks]
        if any("\n" in name for name in new):
            raise ValueError(f"task names with a line break cannot be stored with their statistics: {new}")
        if new:
            self.tasks += new
            self.task_names = encode_names(self.tasks).to(self.running_mean.device)
            self.resize(len(self.tasks))

    def resize(self, slots: int) -> None:
        extra = slots - self.task_mean.size(0)
        like = self.running_mean
        self.task_mean = torch.cat([self.task_mean, like.new_zeros(extra, like.numel())])
        self.task_var = torch.cat([self.task_var, like.new_ones(extra, like.numel())])
        self.task_batches = torch.cat([self.task_batches, self.task_batches.new_zeros(extra)])

    def slot(self, task: Optional[str]) -> Optional[int]:
        return self.tasks.index(task) if task in self.tasks else None

    def forward(self, x: torch.Tensor, task: Optional[str] = None) -> torch.Tensor:
        slot = self.slot(task)
        if not self.training:
            if slot is None or not self.task_batches[slot]:
                return super().forward(x)
            return F.batch_norm(x, self.task_mean[slot], self.task_var[slot], self.weight, self.bias, False, 0.0,
                                self.eps)
        if self.local_kernel and not distributed():
            return self.kernel_forward(x, slot)
        values = x.float()  # statistics in fp32 under bf16 autocast too, as BatchNorm computes them
        mean, var, count = batch_statistics(values)
        y = (values - mean[:, None, None]) * torch.rsqrt(var + self.eps)[:, None, None]
        self.update(self.running_mean, self.running_var, mean, var, count)
        self.num_batches_tracked += 1
        if slot is not None:
            self.update(self.task_mean[slot], self.task_var[slot], mean, var, count)
            self.task_batches[slot] += 1
        return (y * self.weight[:, None, None] + self.bias[:, None, None]).to(x.dtype)

    def kernel_forward(self, x: torch.Tensor, slot: Optional[int]) -> torch.Tensor:
        """Training in one process through BatchNorm's kernel (which updates the shared statistics itself)."""
        y = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, True, self.momentum, self.eps)
        self.num_batches_tracked += 1
        if slot is not None:
            with torch.no_grad():
                var, mean = torch.var_mean(x.float(), dim=(0, 2, 3), correction=0)
            self.update(self.task_mean[slot], self.task_var[slot], mean, var, x.numel() // x.size(1))
            self.task_batches[slot] += 1
        return y

    @torch.no_grad()
    def update(self, running_mean: torch.Tensor, running_var: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
               count: float) -> None:
        """Running averages as BatchNorm keeps them: the variance unbiased over the batch's values."""
        running_mean.lerp_(mean.detach(), self.momentum)
        running_var.lerp_(var.detach() * count / max(count - 1, 1), self.momentum)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "task_mean" not in state_dict and prefix + "running_mean" in state_dict:
            # plain BatchNorm's state (torchvision's or OFA's weights, a checkpoint written before): no task yet
            channels = state_dict[prefix + "running_mean"].numel()
            state_dict.update({prefix + "task_names": encode_names([]), prefix + "task_mean": torch.zeros(0, channels),
                               prefix + "task_var": torch.ones(0, channels),
                               prefix + "task_batches": torch.zeros(0, dtype=torch.long)})
        stored = state_dict.get(prefix + "task_mean")
        if stored is not None and stored.size(0) != self.task_mean.size(0):
            self.task_mean = self.task_mean.new_zeros(0, stored.size(1))
            self.task_var = self.task_var.new_ones(0, stored.size(1))
            self.task_batches = self.task_batches.new_zeros(0)
            self.resize(stored.size(0))
        names = state_dict.get(prefix + "task_names")
        if names is not None:
            self.task_names = names.new_zeros(names.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.tasks = decode_names(self.task_names)


def encode_names(names: list[str]) -> torch.Tensor:
    return torch.tensor(list("\n".join(names).encode("utf-8")), dtype=torch.uint8)


def decode_names(encoded: torch.Tensor) -> list[str]:
    text = bytes(encoded.tolist()).decode("utf-8")
    return text.split("\n") if text else []


def batch_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per-channel mean and (biased) variance of x [B, C, H, W] and the number of values per channel; under
    torch.distributed over every rank's rows, differentiably (the all-reduce passes gradients back to each rank)."""
    sums, count = x.sum(dim=(0, 2, 3)), x.numel() // x.size(1)
    if not distributed():
        mean = sums / count
        return mean, ((x - mean[:, None, None]) ** 2).mean(dim=(0, 2, 3)), count
    from torch.distributed.nn.functional import all_reduce

    counted = 0.0 if UNCOUNTED.get() else 1.0
    count = float(all_reduce(x.new_tensor(float(count) * counted)))
    mean = all_reduce(sums * counted) / count
    return mean, all_reduce(((x - mean[:, None, None]) ** 2).sum(dim=(0, 2, 3)) * counted) / count, count


UNCOUNTED = contextvars.ContextVar("rows_not_counted", default=False)


@contextlib.contextmanager
def rows_not_counted() -> Iterator[None]:
    """Within the block this rank's rows add nothing to the batch statistics of the other ranks: a dummy batch (a
    rank without rows at an epoch's end runs another rank's rows with weight 0) must not count them twice."""
    token = UNCOUNTED.set(True)
    try:
        yield
    finally:
        UNCOUNTED.reset(token)


def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and \
        torch.distributed.get_world_size() > 1


TASK_BUFFERS = ("task_names", "task_mean", "task_var", "task_batches")


def is_task_statistic(key: str) -> bool:
    """A state_dict key of TaskBatchNorm2d's own buffers, which plain BatchNorm weights do not have."""
    return key.rsplit(".", 1)[-1] in TASK_BUFFERS


def add_task_statistics(model: nn.Module, names: Iterable[str]) -> None:
    """Register `names` with every TaskBatchNorm2d of `model` (none: nothing to do)."""
    names = list(names)
    for module in model.modules():
        if isinstance(module, TaskBatchNorm2d):
            module.add_tasks(names)
