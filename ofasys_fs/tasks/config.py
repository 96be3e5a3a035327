"""TaskConfig: one task of a training config (YAML, overrides, `ofasys-train --task/--instruction`), and the Task
objects it describes with their data attached."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional, Sequence, Union

from ..data.rows import FILE_SUFFIXES
from ..data.shards import is_shard_dir, read_manifest
from ..errors import ConfigError, DataError
from ..options import at_least, option
from ..registry import TASK_REGISTRY, did_you_mean
from .base import SPLITS, Task


@dataclasses.dataclass
class TaskConfig:
    """One task of a YAML config: an instruction, its data and how it is scored and weighted."""

    name: Optional[str] = option(None, "task name; a built-in name (caption, vqa, ...) brings its defaults")
    instruction: Union[str, list[str], None] = option(
        None, 'instruction or list of templates ("|||" also separates templates); default: the built-in one'
    )
    data: Union[str, dict[str, str], None] = option(
        None, "a folder or file holding the <split> data, or a mapping split -> path"
    )
    train_data: Optional[str] = option(None, "train split path (overrides data)")
    valid_data: Optional[str] = option(None, "valid split path (overrides data)")
    test_data: Optional[str] = option(None, "test split path (overrides data)")
    metric: Optional[str] = option(None, "metric name for validation (e.g. cider, bleu, accuracy)")
    references: Optional[str] = option(None, "column holding the references (default: the target column)")
    answers: Union[str, list[str], None] = option(
        None, "closed answer set: a list or a file path (default: distinct train targets)"
    )
    weight: float = option(1.0, "scales this task's loss", check=at_least(0))
    batch_size: Optional[int] = option(None, "rows per batch of this task (default: batch_size)", check=at_least(1))
    options: dict[str, Any] = option({}, "options of a built-in task, passed through as given")


def tasks_from_config(task_cfgs: Sequence[TaskConfig]) -> list[Task]:
    """Task objects for the config's `tasks` list, with their data attached."""
    return [task_from_config(tc, index) for index, tc in enumerate(task_cfgs)]


def task_from_config(tc: TaskConfig, index: int) -> Task:
    where = f"tasks.{index}" + (f" ({tc.name})" if tc.name else "")
    builtin = tc.name is not None and tc.name in TASK_REGISTRY
    if not builtin and tc.instruction is None:
        known = ", ".join(TASK_REGISTRY.names()) or "none yet"
        hint = did_you_mean(tc.name, TASK_REGISTRY.names()) if tc.name else ""
        raise ConfigError(f"{where}: give an instruction, or a built-in task name (or a plugin's, with "
                          f"--user-dir).{hint} Registered: {known}")
    task_class = TASK_REGISTRY.get(tc.name).cls if builtin else Task
    try:
        task = task_class(
            name=tc.name, instruction=tc.instruction, metric=tc.metric, references=tc.references,
            answers=read_answers(tc.answers, where), weight=tc.weight, batch_size=tc.batch_size, **tc.options,
        )
    except TypeError as err:  # an option the task does not take
        raise ConfigError(f"{where}: {err}; check its options: {sorted(tc.options)}") from None
    sources = data_sources(tc, where)
    if "train" not in sources:
        raise ConfigError(f"{where}: no training data; set data: (a file or a folder with train.jsonl) or train_data:")
    for split, source in sources.items():
        try:
            task.add_dataset(source, split)
        except DataError as err:
            raise ConfigError(f"{where}, {split} data: {err}") from None
    return task


def read_answers(answers, where: str) -> Optional[list[str]]:
    """A list as given, or a file path with one answer per line."""
    if not isinstance(answers, str):
        return answers
    if not os.path.isfile(answers):
        raise ConfigError(f"{where}: answers file {answers} does not exist (give a list or a file, one answer per line)")
    try:
        with open(answers, encoding="utf-8") as handle:
            listed = [line.strip() for line in handle if line.strip()]
    except UnicodeDecodeError as err:
        raise ConfigError(f"{where}: answers file {answers} is not UTF-8 text ({err.reason} at byte "
                          f"{err.start})") from None
    if not listed:
        raise ConfigError(f"{where}: answers file {answers} lists no answers (expected one per line)")
    return listed


def data_sources(tc: TaskConfig, where: str) -> dict[str, str]:
    """split -> path: a file is the train split; a folder gives every split it holds; <split>_data wins."""
    if isinstance(tc.data, dict):
        unknown = sorted(set(tc.data) - set(SPLITS))
        if unknown:
            raise ConfigError(f"{where}: data keys must be splits {SPLITS}, got {unknown}")
        sources = dict(tc.data)
    elif tc.data is None:
        sources = {}
    elif os.path.isdir(tc.data):
        sources = {split: tc.data for split in SPLITS if folder_has_split(tc.data, split)}
    else:
        sources = {"train": tc.data}
    for split in SPLITS:
        if getattr(tc, f"{split}_data"):
            sources[split] = getattr(tc, f"{split}_data")
    return sources


def folder_has_split(folder: str, split: str) -> bool:
    if is_shard_dir(folder):
        return split in read_manifest(folder)["splits"]
    return any(os.path.isfile(os.path.join(folder, split + suffix)) for suffix in FILE_SUFFIXES)
