"""Training batches over many tasks (docs/design.md §9): which task each micro-step uses, each task's rows in
epoch order (fixed batches or --max-tokens with length bucketing), and the DataLoaders that turn row
keys `(row_index, epoch)` into collated samples.

Everything is a pure function of (seed, task, epoch) plus a per-task cursor (epoch, rows consumed),
so a run resumed from a checkpoint draws exactly the batches the uninterrupted run would have drawn.
With several ranks, a step of a task is world_size consecutive per-rank batches (rank r takes the r-th),
so N ranks with batch_size B see the rows one process with batch_size N*B sees; the cursor is the same
on every rank.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Optional

import numpy as np
from torch.utils.data import DataLoader, Dataset

from ..data.dataset import BadRow, TaskDataset
from ..data.loader import make_loader
from ..data.sampler import Sampling, epoch_permutation, task_for_step, task_probabilities
from ..errors import CheckpointError, DataError
from ..rng import stable_hash

Key = tuple[int, int]  # (row_index, epoch): what TaskDataset is indexed by


def row_lengths(dataset: Dataset) -> np.ndarray:
    """Tokens per row for --max-tokens (max of source and target, fairseq), measured once at epoch 0 (a bad row
    skipped with --skip-bad-rows counts 0)."""
    examples = (dataset[(row, 0)] for row in range(len(dataset)))
    return np.fromiter((0 if isinstance(ex, BadRow) else max(ex.source_length, ex.target_length) for ex in examples),
                       dtype=np.int64, count=len(dataset))


@dataclasses.dataclass
class Cursor:
    """Where a task is in its data: the data epoch and how many rows of it were consumed."""

    epoch: int = 0
    consumed: int = 0


def pack_by_tokens(order: np.ndarray, lengths: np.ndarray, max_tokens: int, max_rows: Optional[int],
                   multiple: int, task: str) -> list[np.ndarray]:
    """Consecutive rows of `order` grouped so that rows x longest row <= max_tokens (fairseq's budget,
    padding included); batch sizes are rounded down to `multiple` where the budget allows more than one."""
    batches, start, longest = [], 0, 0
    for position, row in enumerate(order):
        length = int(lengths[row])
        if length > max_tokens:
            raise DataError(
                f"task {task!r}, row {int(row)}: {length} tokens, more than --max-tokens {max_tokens}; "
                f"raise max_tokens or shorten the row (max_source_positions / max_target_positions)"
            )
        count = position - start
        while count and (count == max_rows or max(longest, length) * (count + 1) > max_tokens):
            keep = count - count % multiple if count >= multiple else count
            batches.append(order[start:start + keep])
            start, count = start + keep, count - keep
            longest = int(lengths[order[start:position]].max(initial=0))
        longest = max(longest, length)
    if start < len(order):
        batches.append(order[start:])
    return batches


Step = list[np.ndarray]  # one step of a task: the batch of each rank (fewer than world_size at an epoch's end)


class TaskBatchPlan:
    """One task's training batches, epoch by epoch, as row-index arrays, grouped into steps of world_size.

    Without max_tokens: consecutive slices of `epoch_permutation`. With max_tokens: the permutation
    sorted by length (ties keep the random order), packed under the token budget, and the batches
    shuffled, so that a batch holds rows of similar length (length bucketing).
    """

    def __init__(self, task: str, size: int, seed: int, batch_size: int, max_tokens: Optional[int] = None,
                 lengths: Optional[np.ndarray] = None, multiple: int = 1, max_rows: Optional[int] = None,
                 world_size: int = 1):
        if max_tokens is not None and lengths is None:
            raise ValueError(f"task {task!r}: max_tokens batching needs the row lengths")
        self.task, self.size, self.seed = task, size, seed
        self.batch_size, self.max_tokens, self.lengths = batch_size, max_tokens, lengths
        self.multiple, self.max_rows, self.world_size = multiple, max_rows, world_size
        # epoch -> (steps, {first row position of a step: its index}); two epochs, since a prefetching
        # DataLoader may already read the next epoch while the trainer finishes the current one
        self.cache: dict[int, tuple[list[Step], dict[int, int]]] = {}

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's batches over all ranks: one row array per step."""
        return [np.concatenate(step) for step in self.epoch_index(epoch)[0]]

    def epoch_index(self, epoch: int) -> tuple[list[Step], dict[int, int]]:
        if epoch not in self.cache:
            batches = self.make_batches(epoch)
            steps = [batches[i:i + self.world_size] for i in range(0, len(batches), self.world_size)]
            starts = np.cumsum([0] + [sum(map(len, step)) for step in steps[:-1]])
            self.cache[epoch] = (steps, {int(start): index for index, start in enumerate(starts)})
            if len(self.cache) > 2:  # the oldest other epoch: with a tiny data set the loader runs epochs ahead
                del self.cache[min(cached for cached in self.cache if cached != epoch)]
        return self.cache[epoch]

    def make_batches(self, epoch: int) -> list[np.ndarray]:
        order = epoch_permutation(self.seed, self.task, epoch, self.size)
        if self.max_tokens is None:
            return [order[i:i + self.batch_size] for i in range(0, self.size, self.batch_size)]
        order = order[np.argsort(self.lengths[order], kind="stable")]
        batches = pack_by_tokens(order, self.lengths, self.max_tokens, self.max_rows, self.multiple, self.task)
        rng = np.random.Generator(np.random.PCG64(stable_hash(self.seed, self.task, "batch-order", epoch)))
        return [batches[i] for i in rng.permutation(len(batches))]

    def step_at(self, cursor: Cursor) -> Step:
        """The step that starts at `cursor` (which must sit on a step boundary of its epoch)."""
        steps, index_of_start = self.epoch_index(cursor.epoch)
        if cursor.consumed not in index_of_start:
            raise CheckpointError(
                f"task {self.task!r}: the saved data position ({cursor.consumed} rows into epoch {cursor.epoch}) is "
                f"not a step boundary of this run's batching (batch_size/max_tokens, the number of ranks or the "
                f"data changed since the checkpoint?); resume with --reset-dataloader to start the data from the "
                f"beginning"
            )
        return steps[index_of_start[cursor.consumed]]

    def advance(self, cursor: Cursor) -> Step:
        """Return the step at `cursor` and move the cursor past it (to the next epoch at the end)."""
        step = self.step_at(cursor)
        cursor.consumed += sum(map(len, step))
        if cursor.consumed >= self.size:
            cursor.epoch, cursor.consumed = cursor.epoch + 1, 0
        return step

    def keys_from(self, cursor: Cursor, rank: int = 0) -> Iterator[list[Key]]:
        """Endless batches of (row_index, epoch) keys of one rank, starting at a copy of `cursor`. Where a step
        has no batch for the rank (an epoch's end), it gets rank 0's rows as a dummy (see `is_dummy`)."""
        cursor = dataclasses.replace(cursor)
        while True:
            epoch = cursor.epoch
            step = self.advance(cursor)
            yield [(int(row), epoch) for row in step[rank if rank < len(step) else 0]]

    def is_dummy(self, cursor: Cursor, rank: int) -> bool:
        """Whether the step at `cursor` has no batch for `rank` (the rank then runs a dummy with weight 0)."""
        return rank >= len(self.step_at(cursor))


class KeyBatchSampler:
    """DataLoader batch sampler: one rank's key batches of the plan from a starting cursor (endless)."""

    def __init__(self, plan: TaskBatchPlan, start: Cursor, rank: int = 0):
        self.plan, self.start, self.rank = plan, dataclasses.replace(start), rank

    def __iter__(self) -> Iterator[list[Key]]:
        return self.plan.keys_from(self.start, self.rank)


@dataclasses.dataclass
class TaskFeed:
    """One task's training data on this rank: its plan, the DataLoader iterator and the cursor of taken steps.

    The loader may prefetch ahead; the cursor mirrors only what the trainer has taken, so it is what
    a checkpoint stores. A sample with `"dummy": True` holds another rank's rows and must count for nothing.
    """

    name: str
    weight: float
    plan: TaskBatchPlan
    cursor: Cursor
    make_iterator: Callable[[Cursor], Iterator[dict]]
    iterator: Optional[Iterator[dict]] = None
    rank: int = 0

    def next_sample(self) -> dict:
        if self.iterator is None:
            self.iterator = self.make_iterator(self.cursor)
        sample = next(self.iterator)
        sample["dummy"] = self.plan.is_dummy(self.cursor, self.rank)
        self.plan.advance(self.cursor)
        sample["task"] = self.name
        sample["task_weight"] = self.weight
        return sample

    def close(self) -> None:
        self.iterator = None  # ends the worker processes of the loader's iterator


class TrainBatches:
    """The samples of each micro-step, in the order the task schedule says; `state_dict` resumes it.

    `sampling` picks the task of micro-step (update, k) as a pure function of (seed, update, k); with
    "all" every micro-step holds one batch of each task.
    """

    def __init__(self, feeds: list[TaskFeed], sampling: Sampling, seed: int, update_freq: int):
        self.feeds, self.sampling, self.seed, self.update_freq = feeds, sampling, seed, update_freq
        self.probabilities = task_probabilities(sampling, [feed.plan.size for feed in feeds])

    def micro_batches(self, update: int) -> list[list[dict]]:
        """For each of the update_freq micro-steps of `update`: the samples it runs (one per chosen task)."""
        return [
            [self.feeds[i].next_sample() for i in self.tasks_at(update, step)] for step in range(self.update_freq)
        ]

    def tasks_at(self, update: int, micro_step: int) -> list[int]:
        return task_for_step(self.sampling, self.probabilities, self.seed, update, micro_step, self.update_freq)

    @property
    def completed_epochs(self) -> int:
        """Full passes over the data: the fewest among the tasks that are sampled at all."""
        sampled = [feed.cursor.epoch for feed, p in zip(self.feeds, self.probabilities) if p > 0]
        return min(sampled)

    def state_dict(self) -> dict:
        return {feed.name: {"epoch": feed.cursor.epoch, "consumed": feed.cursor.consumed} for feed in self.feeds}

    def close(self) -> None:
        for feed in self.feeds:
            feed.close()


def restore_cursors(names: list[str], state: Optional[dict]) -> dict[str, Cursor]:
    """Cursors from a checkpoint's sampler state (fresh ones without); the task set must match."""
    if state is None:
        return {name: Cursor() for name in names}
    if sorted(state) != sorted(names):
        raise CheckpointError(
            f"the checkpoint's data position is for tasks {sorted(state)}, this run trains {sorted(names)}; "
            f"resume with --reset-dataloader (or start a new run with --finetune-from-model)"
        )
    return {name: Cursor(int(state[name]["epoch"]), int(state[name]["consumed"])) for name in names}


def train_batches(tasks: list, encoders: dict, cfg: Any, cursors_state: Optional[dict], rank: int = 0,
                  world_size: int = 1) -> TrainBatches:
    """The training data of every task (TrainConfig `cfg`) for one rank, from a checkpoint's cursors or from
    the start; batch_size and max_tokens are per rank."""
    seed, dataset_cfg = cfg.common.seed, cfg.dataset
    cursors = restore_cursors([task.name for task in tasks], cursors_state)
    feeds = []
    for task in tasks:
        dataset = TaskDataset(task, "train", encoders[task.name], seed, dataset_cfg.skip_bad_rows)
        plan = TaskBatchPlan(
            task.name, len(dataset), seed, task.batch_size or dataset_cfg.batch_size, dataset_cfg.max_tokens,
            row_lengths(dataset) if dataset_cfg.max_tokens else None, dataset_cfg.required_batch_size_multiple,
            max_rows=task.batch_size, world_size=world_size,
        )

        def start(cursor: Cursor, dataset=dataset, plan=plan) -> Iterator[dict]:
            sampler = KeyBatchSampler(plan, cursor, rank)
            return iter(make_loader(dataset, sampler, dataset.collater, dataset_cfg.num_workers, seed))

        feeds.append(TaskFeed(task.name, task.weight, plan, cursors[task.name], start, rank=rank))
    sampling = Sampling.parse(cfg.optimization.sampling, [task.name for task in tasks])
    return TrainBatches(feeds, sampling, seed, cfg.optimization.update_freq)


def valid_loader(task: Any, encoder: Any, cfg: Any) -> DataLoader:
    """A task's validation rows in file order (epoch 0), at most max_valid_samples, in batches of batch_size."""
    dataset = TaskDataset(task, "valid", encoder, cfg.common.seed, cfg.dataset.skip_bad_rows)
    batch_size, limit = task.batch_size or cfg.dataset.batch_size, cfg.validation.max_valid_samples
    count = len(dataset) if limit is None else min(len(dataset), limit)
    batches = [[(row, 0) for row in range(start, min(start + batch_size, count))] for start in range(0, count, batch_size)]
    return make_loader(dataset, batches, dataset.collater, cfg.dataset.num_workers, cfg.common.seed)
