"""One split of every ofasys_fs task as one fairseq dataset: an index is a (task, row) pair, and a batch never mixes
tasks (each task's rows are batched on their own). In training the batches of a step on every rank hold one task:
each task's batches come in whole steps (OfasysTask.get_batch_iterator shuffles them by step), since the ranks of a
step share their BatchNorm statistics (models/task_batch_norm.py) and must all run the same task's modules."""
from __future__ import annotations

import bisect
from typing import Optional, Sequence

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils

from ofasys_fs.data.dataset import TaskDataset
from ofasys_fs.engine.batches import row_lengths


class TaskRowsDataset(FairseqDataset):
    """`datasets` are the TaskDatasets of one split (one per task); samples are ofasys_fs samples (docs/internals.md)
    with "task", "task_weight" and "split" set, and "target" None when the rows have no targets."""

    def __init__(self, split: str, datasets: Sequence[TaskDataset], shuffle: bool):
        self.split, self.datasets, self.shuffle = split, list(datasets), shuffle
        self.starts = np.cumsum([0] + [len(dataset) for dataset in self.datasets])
        self.epoch = 0  # ofasys_fs counts data epochs from 0, fairseq from 1
        self.lengths: Optional[np.ndarray] = None
        self.ranks = 1  # batches per training step (the data-parallel world size): OfasysTask.get_batch_iterator

    def __len__(self) -> int:
        return int(self.starts[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(task position, row) of a dataset index."""
        task = bisect.bisect_right(self.starts, index) - 1
        return task, int(index - self.starts[task])

    def __getitem__(self, index: int):
        """(task position, is a dummy, the row's example); an index past the end is a dummy copy of index - len."""
        dummy = int(index) >= len(self)
        task, row = self.locate(int(index) - len(self) * dummy)
        return task, dummy, self.datasets[task][(row, self.epoch)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = max(int(epoch) - 1, 0)

    def collater(self, items: list) -> dict:
        """The ofasys_fs sample of one task's rows, with fairseq's conventions on top: "id" is the dataset index
        (unique over the tasks; the row is id - id_offset), and the target leaves out the forced decoder prompt
        (padding there, which the loss skips anyway), so that fairseq-generate's T- lines compare with H- lines.
        A batch of dummies (a step's rows for a rank that has none) has "dummy" set and must count for nothing."""
        if not items:
            return {}
        task, dummy = items[0][:2]
        dataset = self.datasets[task]
        sample = dataset.collater([example for _, _, example in items])
        if dummy:
            sample["dummy"] = True
        offset = int(self.starts[task])
        sample.update(task=dataset.task.name, task_weight=dataset.task.weight, split=self.split,
                      id=sample["id"] + offset, id_offset=offset)
        if "target" in sample:
            prompt = torch.arange(sample["target"].size(1))[None, :] < sample["prefix_lengths"][:, None]
            sample["target"] = sample["target"].masked_fill(prompt, dataset.encoder.vocab.pad)
        else:
            sample["target"] = None
        return sample

    def token_counts(self) -> np.ndarray:
        """Tokens per index (the longer of source and target), measured once, only when fairseq asks for them."""
        if self.lengths is None:
            self.lengths = np.concatenate([row_lengths(dataset) for dataset in self.datasets]) if self.datasets \
                else np.zeros(0, dtype=np.int64)
        return self.lengths

    def num_tokens(self, index: int) -> int:
        return int(self.token_counts()[index])

    def size(self, index: int) -> int:
        return self.num_tokens(index)

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self.token_counts()[indices]

    def ordered_indices(self) -> np.ndarray:
        """Row order; a random one for a training split (fairseq seeds numpy per epoch around this call)."""
        return np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1) -> list:
        """fairseq's batching, run per task (a task's own batch_size overrides --batch-size); token counts are
        measured only under --max-tokens. A task's last batch is kept even when it is not a multiple of
        --required-batch-size-multiple (fairseq's batch_by_size drops it: a task's rows would never be seen). With
        several ranks a task's batches are padded to whole steps with dummies (`whole_steps`)."""
        indices = np.asarray(indices, dtype=np.int64)
        owners = np.searchsorted(self.starts, indices, side="right") - 1
        batches = []
        for position, dataset in enumerate(self.datasets):
            mine = indices[owners == position]
            counts = self.num_tokens_vec(mine) if max_tokens is not None else np.zeros(len(mine), dtype=np.int64)
            own = data_utils.batch_by_size(mine, self.num_tokens, num_tokens_vec=counts, max_tokens=max_tokens,
                                           max_sentences=dataset.task.batch_size or max_sentences,
                                           required_batch_size_multiple=required_batch_size_multiple)
            covered = sum(len(batch) for batch in own)
            batches.extend(self.whole_steps(own + ([mine[covered:]] if covered < len(mine) else [])))
        return batches

    def whole_steps(self, batches: list) -> list:
        """A task's batches padded to a multiple of `ranks`: the ranks left without a batch in the last step get a
        dummy copy of that step's first batch (its indices + len(self)), as ofasys-train gives them rank 0's rows."""
        missing = -len(batches) % self.ranks
        if not missing:
            return batches
        return batches + [np.asarray(batches[len(batches) - len(batches) % self.ranks]) + len(self)] * missing
