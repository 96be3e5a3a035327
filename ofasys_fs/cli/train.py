"""ofasys-train: train from a YAML config with key=value overrides, or from flags (docs/cli.md).

    ofasys-train CONFIG.yaml [key=value ...] [--flag value ...]
    ofasys-train --task NAME --data D --arch tiny ...          (a built-in task)
    ofasys-train --instruction I --data D [--task NAME] ...    (an ad-hoc task)

The options that differ from the defaults are printed first (`--print-config` prints the whole resolved
config and exits); then the same `Trainer.fit` as the Python API runs.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ..config import add_config_args, load_config, print_config
from ..engine.config import TrainConfig
from ..engine.distributed import is_main_process
from ..engine.trainer import Trainer
from ..errors import ConfigError
from ..registry import import_user_dir
from ..tasks.config import tasks_from_config
from .command import CommandParser, EXIT_OK, add_debug_flag, entry_point

PROG = "ofasys-train"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
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
    add_config_args(parser, TrainConfig)
    add_debug_flag(parser)
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
    return config_from_args(build_parser().parse_intermixed_args(argv))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed arguments."""
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


def train(args: argparse.Namespace) -> int:
    """Print the options that differ from the defaults (or the whole config with --print-config), then train
    with the same Trainer.fit as the Python API. Plugin folders are imported before any name is resolved."""
    cfg = config_from_args(args)
    if cfg.common.print_config:
        if is_main_process():
            print_config(cfg)
        return EXIT_OK
    for folder in cfg.common.user_dir:
        import_user_dir(folder)
    if not cfg.tasks:
        raise ConfigError("no tasks to train: give a CONFIG.yaml with a `tasks:` list, or --task NAME (a built-in or "
                          "plugin task) or --instruction I, with --data D")
    if is_main_process():  # under torchrun, rank 0 speaks for all
        print_config(cfg, only_changed=True)
    Trainer(cfg).fit(tasks=tasks_from_config(cfg.tasks))
    return EXIT_OK


main = entry_point(PROG, build_parser, train, intermixed=True)


if __name__ == "__main__":
    sys.exit(main())
