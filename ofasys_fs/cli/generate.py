"""ofasys-generate: decode a data file with a trained checkpoint (docs/design.md §15; docs/inference.md).

    ofasys-generate --path CKPT --task NAME --data D [--gen-subset test] [--beam 5 ...] [--results-path OUT]
    ofasys-generate --path CKPT --instruction I --data D ...

Writes one JSON line per input row, in input order: {"id": row index, "text"/"box"/"objects", "tokens",
"score", "positional_scores"}, to OUT (a file, or generate-<subset>.jsonl in a folder) or to stdout; then a
score summary when the rows hold references. Generated media (speech) go one file per row into
<subset>-media/ beside OUT, and each line names its file ("file", relative to OUT's folder). The same
Predictor as OFASys.inference produces the outputs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Optional

from ..errors import ConfigError
from ..inference.evaluate import references_of, score
from ..inference.layout import FEATURES
from ..instruction import column_value
from ..tasks.base import SPLITS, Task
from .command import entry_point
from .inference_args import add_checkpoint_args, add_generation_args, given_generation_options, load_model

PROG = "ofasys-generate"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Decode rows with a trained checkpoint "
                                                            "(docs/inference.md).")
    what = parser.add_argument_group("what to decode")
    what.add_argument("--task", help="a task of the checkpoint (its templates, answers and decoding defaults)")
    what.add_argument("--instruction", help="an instruction (a trained task's defaults apply when it matches one "
                                            "of its templates)")
    what.add_argument("--data", required=True, help="a .jsonl/.tsv/.parquet file, a folder holding "
                                                    "<gen-subset>.jsonl/..., or a shard folder")
    what.add_argument("--gen-subset", default="test", help="the split to read from a folder (default: test)")
    what.add_argument("--results-path", help="write the JSON lines here (a file, or a folder for "
                                             "generate-<subset>.jsonl); default: stdout")
    what.add_argument("--scoring", help="metric to score with (default: the task's metric)")
    add_checkpoint_args(parser)
    add_generation_args(parser)
    return parser


def results_file(path: str, subset: str) -> str:
    """--results-path as a file path: a folder (existing, or written with a trailing slash) gets
    generate-<subset>.jsonl."""
    if os.path.isdir(path) or path.endswith(os.sep):
        os.makedirs(path, exist_ok=True)
        return os.path.join(path, f"generate-{subset}.jsonl")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def write_lines(pairs: list, stream: Any, files: Optional[dict] = None) -> None:
    for index, output in pairs:
        media = {"file": files[index]} if files and index in files else {}
        stream.write(json.dumps({"id": index, **output.to_dict(), **media}) + "\n")


def write_media(pairs: list, results_path: str, subset: str) -> dict:
    """Each output's media (Output.save) as <subset>-media/<id><suffix> beside the results file -> {id: that path
    relative to the results file's folder}; {} when the outputs hold no media."""
    folder = os.path.dirname(os.path.abspath(results_path))
    files = {}
    for index, output in pairs:
        if output.media_suffix is None:
            continue
        relative = os.path.join(f"{subset}-media", f"{index}{output.media_suffix}")
        os.makedirs(os.path.join(folder, f"{subset}-media"), exist_ok=True)
        output.save(os.path.join(folder, relative))
        files[index] = relative
    return files


def summary(name: str, subset: str, metric: Any, rows: Any, pairs: list, column: str,
            prediction: Callable[[Any], Any]) -> Optional[str]:
    """"NAME | SUBSET | N rows | metric values" when every row has a reference; None when no row has one."""
    indices = [index for index, _ in pairs]
    if all(column_value(rows[index], column) is None for index in indices):
        return None
    where = f"{PROG}: {name!r}, subset {subset!r}, metric {metric!r}"
    references = references_of(rows, indices, column, where)
    values, _ = score(metric, [prediction(output) for _, output in pairs], references)
    return " | ".join([name, subset, f"{len(pairs)} rows", *(f"{key} {value:.4f}" for key, value in values.items())])


def generate(args: argparse.Namespace) -> int:
    if bool(args.task) == bool(args.instruction):
        raise ConfigError("give --task NAME (a task of the checkpoint) or --instruction I, exactly one of them")
    options = given_generation_options(args)
    model = load_model(args)
    if args.task:
        task = model.task(args.task)
        predictor = model.task_predictor(task)
    else:
        predictor = model.predictor(args.instruction)
        task = model.matching_task(predictor.encoder.templates[0]) or Task(name=predictor.task_name,
                                                                           instruction=args.instruction)
    if predictor.layout.kind == FEATURES and not args.results_path:
        raise ConfigError(f"{PROG}: {predictor.task_name!r} generates media (speech): give --results-path, beside "
                          f"which each row's file is written")
    rows = predictor.rows(args.data, args.gen_subset)
    pairs = predictor.predict_indexed(rows, options=options, batch_size=args.batch_size,
                                      split=args.gen_subset if args.gen_subset in SPLITS else "test",
                                      progress=sys.stderr.isatty())
    if args.results_path:
        path = results_file(args.results_path, args.gen_subset)
        files = write_media(pairs, path, args.gen_subset)
        with open(path, "w", encoding="utf-8") as handle:
            write_lines(pairs, handle, files)
        media = f" and {len(files)} media files to {os.path.join(os.path.dirname(path), args.gen_subset + '-media')}"
        print(f"{PROG}: wrote {len(pairs)} rows to {path}{media if files else ''}", file=sys.stderr)
    else:
        write_lines(pairs, sys.stdout)
    metric = args.scoring or task.metric
    if metric:
        line = summary(predictor.task_name, args.gen_subset, metric, rows, pairs, task.references,
                       predictor.layout.prediction)
        report = sys.stdout if args.results_path else sys.stderr
        print(line or f"{PROG}: not scored: no row has references in column {task.references!r}", file=report)
    return 0


main = entry_point(PROG, build_parser, generate)


if __name__ == "__main__":
    sys.exit(main())
