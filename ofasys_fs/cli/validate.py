"""ofasys-validate: a checkpoint's validation loss and metric on a task's data, without training (docs/design.md §15).

    ofasys-validate --path CKPT --task NAME --data D [--valid-subset valid] [--max-valid-samples N]

Prints one fairseq-style line: `valid on 'NAME' subset 'valid' | loss ... | nll_loss ... | ppl ... | METRIC ...`.
The loss is batched as the Trainer validates; the metric comes from the shared `evaluate`.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from ..config import config_from_dict
from ..data.encode import RowEncoder
from ..engine.config import TrainConfig
from ..engine.logging import format_value
from ..engine.validation import valid_loss
from ..inference.evaluate import evaluate
from ..registry import CRITERION_REGISTRY
from .arg_types import positive_int
from .command import CommandParser, entry_point
from .inference_args import add_checkpoint_args, add_generation_args, given_generation_options, load_model

PROG = "ofasys-validate"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog=PROG, description="Validation loss and metric of a checkpoint "
                                                            "(docs/inference.md).")
    what = parser.add_argument_group("what to validate")
    what.add_argument("--task", required=True, help="a task of the checkpoint")
    what.add_argument("--data", required=True, help="a data file, a folder holding <valid-subset>.jsonl/..., or a "
                                                    "shard folder")
    what.add_argument("--valid-subset", default="valid", help="the split to read from a folder (default: valid)")
    what.add_argument("--max-valid-samples", type=positive_int, default=None, help="validate on the first N rows only")
    what.add_argument("--scoring", help="metric to score with (default: the task's metric)")
    add_checkpoint_args(parser)
    add_generation_args(parser)
    return parser


def validation_config(stored: dict, args: argparse.Namespace) -> TrainConfig:
    """The run's stored config with this command's batch size and row limit."""
    cfg = config_from_dict(TrainConfig, stored, source="the checkpoint's training config")
    dataset = dataclasses.replace(cfg.dataset, batch_size=args.batch_size or cfg.dataset.batch_size)
    validation = dataclasses.replace(cfg.validation, max_valid_samples=args.max_valid_samples)
    return dataclasses.replace(cfg, dataset=dataset, validation=validation)


def validate(args: argparse.Namespace) -> int:
    options = given_generation_options(args)
    model = load_model(args)
    task = model.task(args.task)
    task.datasets["valid"] = task.prepared_rows(args.data, args.valid_subset)
    cfg = validation_config(model.train_config, args)
    encoder = RowEncoder.for_task(task, model.vocab, model.data_cfg)
    criterion = CRITERION_REGISTRY.build_with(task.criterion, {"label_smoothing": cfg.optimization.label_smoothing})
    values = valid_loss(model.model, criterion.to(next(model.model.parameters()).device), task, encoder, cfg)
    if args.scoring or task.metric:
        evaluation = evaluate(model.model, task, "valid", encoder=encoder, max_samples=args.max_valid_samples,
                              metric=args.scoring, options=options,
                              batch_size=args.batch_size, seed=cfg.common.seed, progress=sys.stderr.isatty())
        values = {**values, **evaluation.metrics}
    fields = [f"{key} {format_value(value)}" for key, value in values.items()]
    print(" | ".join([f"valid on {task.name!r} subset {args.valid_subset!r}", *fields]))
    return 0


main = entry_point(PROG, build_parser, validate)


if __name__ == "__main__":
    sys.exit(main())
