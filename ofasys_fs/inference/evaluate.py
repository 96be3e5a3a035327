"""Evaluation of a task's split: generate with the shared Predictor and score with the task's metric against
its `references` column (docs/inference.md).

Every rank may decode a strided shard of the rows (`shard_indices`); `merge_by_index` puts the gathered
parts back in row order without the duplicates a padded distributed sampler adds.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

from ..data.encode import RowEncoder
from ..errors import ConfigError, DataError
from ..instruction import column_value
from ..registry import build_metric
from .outputs import Output
from .predictor import Predictor

Part = Sequence[tuple[int, Any]]  # (row index, value) pairs of one rank


@dataclasses.dataclass
class Evaluation:
    """A task's predictions on a split, in row order, and the metric values (empty without a metric)."""

    task: str
    split: str
    indices: list[int]
    outputs: list[Output]
    predictions: list  # what the metric scores: text, box or objects per row
    references: Optional[list]
    metrics: dict[str, float]
    higher_is_better: Optional[bool] = None  # of the metric; None without one


def shard_indices(count: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """The rows one rank decodes: every world_size-th row starting at its rank (no padding)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    return list(range(rank, count, world_size))


def merge_by_index(parts: Iterable[Part], count: Optional[int] = None) -> list[tuple[int, Any]]:
    """The pairs of all parts sorted by row index, each index once (a repeated index is a padding duplicate:
    the first is kept). With `count`, every index in range(count) must be present."""
    merged: dict[int, Any] = {}
    for part in parts:
        for index, value in part:
            merged.setdefault(int(index), value)
    if count is not None:
        missing, unexpected = sorted(set(range(count)) - set(merged)), sorted(set(merged) - set(range(count)))
        if missing or unexpected:
            raise ValueError(f"merging predictions: expected rows 0..{count - 1}, missing {missing[:10]}, "
                             f"unexpected {unexpected[:10]}")
    return sorted(merged.items())


def references_of(rows: Any, indices: Sequence[int], column: str, where: str) -> list:
    """Each row's reference from `column`; a missing one is an error naming the row."""
    references = []
    for index in indices:
        value = column_value(rows[index], column)
        if value is None:
            raise DataError(f"{where}, row {index}: no reference in column {column!r} (row keys: "
                             f"{sorted(map(str, rows[index]))}); set the task's references=COLUMN")
        references.append(value)
    return references


def score(metric: Any, predictions: list, references: list) -> tuple[dict[str, float], bool]:
    """(metric values, higher_is_better) of a registered metric given by name or {"name": ..., options}."""
    scorer = build_metric(metric)
    return scorer.compute(predictions, references), type(scorer).higher_is_better


def evaluate(model: torch.nn.Module, task: Any, split: str = "valid", *, vocab: Any = None, data_cfg: Any = None,
             encoder: Optional[RowEncoder] = None, max_samples: Optional[int] = None, metric: Any = None,
             options: Optional[dict] = None, batch_size: Optional[int] = None, num_workers: int = 0, seed: int = 1,
             rank: int = 0, world_size: int = 1, gather: Optional[Callable[[list], list]] = None,
             progress: bool = False) -> Evaluation:
    """Decode `task`'s `split` (its first max_samples rows) and score it with `metric` (default task.metric).

    Give the task's `encoder`, or `vocab` (+ `data_cfg`) to build one. With world_size > 1 this rank decodes
    its shard and `gather(local_pairs)` collects them (gather_object: every rank's list of pairs on rank 0,
    anything on the others); rank 0 merges and scores, the other ranks return their own rows, no metrics.
    """
    if split not in task.datasets:
        raise ConfigError(f"task {task.name!r} has no {split!r} data to evaluate (splits: {sorted(task.datasets)})")
    if encoder is None:
        if vocab is None:
            raise TypeError("evaluate needs the task's encoder (a RowEncoder) or the vocab to build one")
        encoder = RowEncoder.for_task(task, vocab, data_cfg)
    if world_size > 1 and gather is None:
        raise ValueError("evaluate with world_size > 1 needs gather= to collect every rank's predictions")
    rows = task.datasets[split]
    count = len(rows) if max_samples is None else min(len(rows), max_samples)
    predictor = Predictor(model, encoder, task.generation, seed)
    local = predictor.predict_indexed(rows, shard_indices(count, rank, world_size), options=options,
                                      batch_size=batch_size, split=split, num_workers=num_workers, progress=progress)
    parts = gather(local) if world_size > 1 else [local]
    pairs = merge_by_index(parts, count) if rank == 0 else local
    indices, outputs = [index for index, _ in pairs], [output for _, output in pairs]
    predictions = [predictor.layout.prediction(output) for output in outputs]
    metric = metric if metric is not None else task.metric
    if metric is None or rank != 0:
        return Evaluation(task.name, split, indices, outputs, predictions, None, {})
    where = f"task {task.name!r}, split {split!r}, metric {metric!r}"
    references = references_of(rows, indices, task.references, where)
    values, higher_is_better = score(metric, predictions, references)
    return Evaluation(task.name, split, indices, outputs, predictions, references, values, higher_is_better)
