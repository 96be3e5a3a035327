"""ofasys-generate: decode a data file with a trained checkpoint (docs/design.md §15; docs/inference.md).

    ofasys-generate --path CKPT --task NAME --data D [--gen-subset test] [--beam 5 ...] [--results-path OUT]
    ofasys-generate --path CKPT --instruction I --data D ...

Writes one JSON line per input row, in input order: {"id": row index, "source": the row's input columns,
"reference" (when the row has one), "text"/"box"/"objects", "tokens", "score", "positional_scores"}, to OUT
(fairseq's --results-path: a folder that gets generate-<subset>.jsonl; a path ending in .jsonl is the file itself)
or to stdout; then a score summary, or a line saying why there is none. Generated media go into <subset>-media/
beside OUT, one file per row (images: .png, also as one grid, <subset>-media/grid.png; speech: .wav) or several
(motion: .bvh and a .gif picture of it), and each line names them ("file", the main one, and "files" when there
are several; relative to OUT's folder). The same Predictor as OFASys.inference produces the outputs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Optional

from ..errors import ConfigError
from ..image_tokenizers.images import image_grid
from ..inference.evaluate import references_of, score
from ..inference.layout import MEDIA_KINDS
from ..instruction import column_value
from ..tasks.base import SPLITS, Task
from .command import CommandParser, entry_point
from .inference_args import add_checkpoint_args, add_generation_args, given_generation_options, load_model

PROG = "ofasys-generate"
GRID_COLUMNS = 10  # rows of the image grid hold this many images
GRID_CELL = 64  # small images are enlarged (by a whole factor) to about this many pixels in the grid


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog=PROG, description="Decode rows with a trained checkpoint "
                                                            "(docs/inference.md).")
    what = parser.add_argument_group("what to decode")
    what.add_argument("--task", help="a task of the checkpoint (its templates, answers and decoding defaults)")
    what.add_argument("--instruction", help="an instruction (a trained task's defaults apply when it matches one "
                                            "of its templates)")
    what.add_argument("--data", required=True, help="a .jsonl/.tsv/.parquet file, a folder holding "
                                                    "<gen-subset>.jsonl/..., or a shard folder")
    what.add_argument("--gen-subset", default="test", help="the split to read from a folder (default: test)")
    what.add_argument("--results-path", help="a folder to write generate-<gen-subset>.jsonl into (a path ending in "
                                             ".jsonl: that file); default: stdout")
    what.add_argument("--scoring", help="metric to score with (default: the task's metric)")
    add_checkpoint_args(parser)
    add_generation_args(parser)
    return parser


def results_file(path: str, subset: str) -> str:
    """--results-path as a file path: a folder (fairseq) gets generate-<subset>.jsonl; a path ending in .jsonl
    is the file."""
    if not path.endswith(".jsonl"):
        os.makedirs(path, exist_ok=True)
        return os.path.join(path, f"generate-{subset}.jsonl")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def json_value(value: Any) -> Any:
    """A row value as JSON can hold it (media bytes and arrays are described, not written)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        shape = getattr(value, "shape", None)
        return f"<{type(value).__name__} {list(shape) if shape is not None else len(value)}>"


def write_lines(pairs: list, rows: Any, inputs: list[str], references: Optional[str], stream: Any,
                files: Optional[dict] = None) -> None:
    """One JSON line per decoded row: its id, its input columns, its reference (when it has one), the output and
    the file of its media (when it has some)."""
    for index, output in pairs:
        row = rows[index]
        line = {"id": index, "source": {name: json_value(column_value(row, name)) for name in inputs}}
        reference = column_value(row, references) if references else None
        if reference is not None:
            line["reference"] = json_value(reference)
        media = {}
        if files and index in files:
            media = {"file": files[index][0], **({"files": files[index]} if len(files[index]) > 1 else {})}
        stream.write(json.dumps({**line, **output.to_dict(), **media}) + "\n")


def write_media(pairs: list, results_path: str, subset: str) -> dict:
    """Each output's media files (Output.save, one per suffix of Output.media_suffixes) as
    <subset>-media/<id><suffix> beside the results file -> {id: their paths relative to the results file's folder,
    the main one first}; {} when the outputs hold no media."""
    folder = os.path.dirname(os.path.abspath(results_path))
    files = {}
    for index, output in pairs:
        for suffix in output.media_suffixes:
            relative = os.path.join(f"{subset}-media", f"{index}{suffix}")
            os.makedirs(os.path.join(folder, f"{subset}-media"), exist_ok=True)
            output.save(os.path.join(folder, relative))
            files.setdefault(index, []).append(relative)
    images = [output.image for _, output in pairs if output.image is not None]
    if images:
        image_grid(images, min(len(images), GRID_COLUMNS), scale=max(1, GRID_CELL // max(images[0].size))).save(
            os.path.join(folder, f"{subset}-media", "grid.png"))
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
    if predictor.layout.kind in MEDIA_KINDS and not args.results_path:
        raise ConfigError(f"{PROG}: {predictor.task_name!r} generates media (images, speech, motion): give "
                          f"--results-path, beside which each row's files are written")
    rows = predictor.rows(args.data, args.gen_subset)
    pairs = predictor.predict_indexed(rows, options=options, batch_size=args.batch_size,
                                      split=args.gen_subset if args.gen_subset in SPLITS else "test",
                                      progress=sys.stderr.isatty())
    inputs = sorted({slot.name for template in predictor.encoder.templates for slot in template.encoder if slot.name})
    if args.results_path:
        path = results_file(args.results_path, args.gen_subset)
        files = write_media(pairs, path, args.gen_subset)
        with open(path, "w", encoding="utf-8") as handle:
            write_lines(pairs, rows, inputs, task.references, handle, files)
        count, folder = sum(map(len, files.values())), os.path.join(os.path.dirname(path), f"{args.gen_subset}-media")
        media = f" and {count} media files to {folder}"
        print(f"{PROG}: wrote {len(pairs)} rows to {path}{media if files else ''}", file=sys.stderr)
    else:
        write_lines(pairs, rows, inputs, task.references, sys.stdout)
    metric = args.scoring or task.metric
    report = sys.stdout if args.results_path else sys.stderr
    if not metric:
        print(f"{PROG}: not scored: task {task.name!r} has no metric; pass --scoring METRIC (docs/metrics.md)",
              file=report)
        return 0
    line = summary(predictor.task_name, args.gen_subset, metric, rows, pairs, task.references,
                   predictor.layout.prediction)
    print(line or f"{PROG}: not scored: no row has references in column {task.references!r}", file=report)
    return 0


main = entry_point(PROG, build_parser, generate)


if __name__ == "__main__":
    sys.exit(main())
