"""ofasys-train: train from a YAML config with key=value overrides, or from flags (DESIGN §11).

    ofasys-train CONFIG.yaml [key=value ...] [--flag value ...]
    ofasys-train --task NAME --data D --arch tiny ...          (a built-in task)
    ofasys-train --instruction I --data D [--task NAME] ...    (an ad-hoc task)

The resolved config is printed first (`--print-config` prints it and exits); then the same
`Trainer.fit` as the Python API runs.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from ..config import ConfigError, add_config_args, load_config, print_config
from ..configs import TaskConfig, TrainConfig
from ..data.rows import FILE_SUFFIXES, DataError
from ..data.shards import is_shard_dir, read_manifest
from ..engine.checkpoint import CheckpointError
from ..engine.distributed import RankFailure, is_main_process
from ..registry import TASK_REGISTRY, RegistryError
from ..tasks.base import SPLITS, Task

USER_ERRORS = (ConfigError, CheckpointError, DataError, RegistryError, OSError, ValueError, FloatingPointError,
               RankFailure)  # OSError: a missing file, a full disk, a permission


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ofasys-train",
        description="Train one generalist model on many tasks. Options: docs/config.md; guide: docs/training.md.",
    )
    parser.add_argument("inputs", nargs="*", metavar="CONFIG.yaml | key=value",
                        help="a YAML config file, then key=value overrides (optimization.lr=3e-4, tasks.0.weight=2)")
    adhoc = parser.add_argument_group("one task from flags (instead of a `tasks` list in the YAML)")
    adhoc.add_argument("--task", help="a built-in task name (caption, vqa, ...), or the name of the --instruction task")
    adhoc.add_argument("--instruction", help="the task's instruction, e.g. '[IMAGE:img] what does the image "
                                             "describe? -> [TEXT:cap]'")
    adhoc.add_argument("--data", help="a data file (train split) or a folder holding <split>.jsonl/.tsv/.parquet "
                                      "or a shard folder")
    add_config_args(parser)
    return parser


def split_inputs(inputs: Sequence[str]) -> tuple[Optional[str], list[str]]:
    """The positional words -> (YAML path or None, key=value overrides)."""
    files = [word for word in inputs if "=" not in word]
    if len(files) > 1:
        raise ConfigError(f"give one config file, then key=value overrides; got several files: {files}")
    if files and inputs[0] != files[0]:
        raise ConfigError(f"the config file {files[0]} must come before the key=value overrides")
    return (files[0] if files else None), [word for word in inputs if "=" in word]


def resolve_config(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    """Parse the command line into a TrainConfig: defaults < YAML < overrides < flags (< the flag task)."""
    args = build_parser().parse_intermixed_args(argv)
    yaml_path, overrides = split_inputs(args.inputs)
    cfg = load_config(TrainConfig, yaml_path, overrides, args)
    if not (args.task or args.instruction or args.data):
        return cfg
    if cfg.tasks:
        raise ConfigError("tasks are given both in the config (tasks: ...) and by --task/--instruction/--data; "
                          "use one of the two")
    if not args.data:
        raise ConfigError("--task/--instruction need --data: the file or folder with the task's rows")
    if not (args.task or args.instruction):
        raise ConfigError("--data needs --task NAME (a built-in task) or --instruction I (an ad-hoc task)")
    flag_task = {"name": args.task, "instruction": args.instruction, "data": args.data}
    return load_config(TrainConfig, yaml_path, overrides, args, tasks=[flag_task])


def tasks_from_config(task_cfgs: Sequence[TaskConfig]) -> list[Task]:
    """Task objects for the config's `tasks` list, with their data attached."""
    import ofasys_fs.tasks  # noqa: F401  (registers the built-in tasks)

    return [task_from_config(tc, index) for index, tc in enumerate(task_cfgs)]


def task_from_config(tc: TaskConfig, index: int) -> Task:
    where = f"tasks.{index}" + (f" ({tc.name})" if tc.name else "")
    builtin = tc.name is not None and tc.name in TASK_REGISTRY
    if not builtin and tc.instruction is None:
        known = ", ".join(TASK_REGISTRY.names()) or "none yet"
        raise ConfigError(f"{where}: give an instruction, or a built-in task name (built-ins: {known})")
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of `ofasys-train`; user errors end with one clear line instead of a traceback."""
    from ..engine.trainer import Trainer

    try:
        cfg = resolve_config(argv)
        if is_main_process():  # under torchrun, rank 0 speaks for all
            print_config(cfg)
        if cfg.common.print_config:
            return 0
        Trainer(cfg).fit(tasks=tasks_from_config(cfg.tasks))
    except USER_ERRORS as err:
        print(f"ofasys-train: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
