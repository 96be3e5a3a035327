"""What every run_scripts/<benchmark>/convert.py shares: the command line, reading the benchmark's published
files with errors that name the file and record, and the loop that writes rows into one split of a shard
folder (`ofasys_fs.data.shards.ShardWriter`). A benchmark's own convert.py only parses its format.

    python -m run_scripts.<benchmark>.convert --destdir DATA --split train <benchmark's inputs> [--media-paths]

Rows a converter deliberately leaves out are yielded as `Skip(reason)`: counted in the manifest's
`skipped_rows`, summarised on stderr, never dropped silently.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import pickle
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable, Optional, Union

from ofasys_fs.data.row_preparer import bind_split as split_role  # train / valid / test by the split name's prefix
from ofasys_fs.data.shards import ShardWriter
from ofasys_fs.errors import DataError, OFASysError

ANSWERS_FILE = "answers.txt"  # closed answer set written next to the shards by a train conversion


class ConversionError(DataError):
    """A benchmark file does not have the published format; the message names the file, record and field."""


@dataclasses.dataclass(frozen=True)
class Skip:
    """A benchmark record that is deliberately not written, and why (e.g. "no answer among the candidates")."""

    reason: str


class MediaReader:
    """Media cells of the rows: the file's original bytes (default: shards are self-contained), or with
    `--media-paths` its absolute path (small shards that need the benchmark's media folder to stay put)."""

    def __init__(self, store_paths: bool = False):
        self.store_paths = store_paths
        self._last: tuple[str, bytes] = ("", b"")  # consecutive rows often share one image

    def __call__(self, path: str, what: str) -> Union[bytes, str]:
        path = os.path.abspath(path)
        if not os.path.isfile(path):
            raise ConversionError(f"{what}: file {path} does not exist")
        if self.store_paths:
            return path
        if self._last[0] != path:
            with open(path, "rb") as handle:
                self._last = (path, handle.read())
        return self._last[1]


RowReader = Callable[[argparse.Namespace, MediaReader], Iterable[Union[dict, Skip]]]


@dataclasses.dataclass
class Converter:
    """One benchmark's converter: `doc` (its module docstring, quoting the format and its source),
    `add_arguments` for its inputs, `read_rows(args, media)` yielding rows or Skips for `args.split`, and
    the built-in task the rows are for (a name, or a function of the arguments), recorded in the manifest
    as "task" for train.sh / evaluate.sh. `columns` forces column kinds where the first row cannot tell."""

    prog: str
    doc: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    read_rows: RowReader
    task: Union[str, Callable[[argparse.Namespace], str]]
    columns: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def build_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=self.prog, description=self.doc,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--destdir", required=True, help="shard folder to write (one folder holds every split)")
        parser.add_argument("--split", required=True, help="shard split to write: train, valid, test or another "
                                                           "test set name (testA, test_other, ...)")
        parser.add_argument("--media-paths", action="store_true", help="store absolute media paths instead of the "
                                                                       "files' bytes")
        self.add_arguments(parser)
        return parser

    def main(self, argv: Optional[Iterable[str]] = None) -> int:
        """Parse, convert, write; 0 on success, 1 with one line on stderr for a bad input (the exit codes of the
        ofasys-* commands, docs/cli.md)."""
        args = self.build_parser().parse_args(None if argv is None else list(argv))
        try:
            task = self.task(args) if callable(self.task) else self.task
            rows = self.read_rows(args, MediaReader(args.media_paths))
            written, skipped = write_split(args.destdir, args.split, rows, self.columns,
                                           {"converter": self.prog, "task": task})
        except (OFASysError, OSError, pickle.UnpicklingError) as err:
            print(f"{self.prog}: error: {err}", file=sys.stderr)
            return 1
        print(f"{self.prog}: wrote {written} rows to {args.destdir} (split {args.split})"
              + (f", skipped {sum(skipped.values())}" if skipped else ""), file=sys.stderr)
        for reason, count in skipped.items():
            print(f"{self.prog}: skipped {count}: {reason}", file=sys.stderr)
        return 0


def write_split(destdir: str, split: str, rows: Iterable[Union[dict, Skip]],
                columns: Optional[Mapping[str, str]] = None,
                manifest: Optional[Mapping[str, Any]] = None) -> tuple[int, dict[str, int]]:
    """Write the rows as split `split` of the shard folder (committed only when every row was read), with
    `manifest` keys added to manifest.json; returns (rows written, {skip reason: count})."""
    skipped: collections.Counter = collections.Counter()
    with ShardWriter(destdir, split, columns=columns) as writer:
        for row in rows:
            if isinstance(row, Skip):
                skipped[row.reason] += 1
            else:
                writer.add_row(row)
        if not writer.rows:
            raise ConversionError(f"split {split!r}: no rows to write"
                                  + (f" (skipped: {dict(skipped)})" if skipped else ""))
        writer.finalize(manifest, skipped_rows=sum(skipped.values()))
    return writer.rows, dict(skipped)


def read_json(path: str) -> Any:
    """A JSON file, or ConversionError naming it."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ConversionError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConversionError(f"{path}: not a JSON file ({err})") from None


def read_jsonl(path: str) -> Iterator[tuple[str, dict]]:
    """(where, record) for each non-blank line of a JSON-lines file; `where` is "FILE, line N"."""
    for where, line in read_lines(path):
        if line.strip():
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as err:
                raise ConversionError(f"{where}: not a JSON object ({err})") from None


def read_lines(path: str) -> Iterator[tuple[str, str]]:
    """(where, line without its newline) for each line of a UTF-8 text file."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            for number, line in enumerate(handle, 1):
                yield f"{path}, line {number}", line.rstrip("\r\n")
    except FileNotFoundError:
        raise ConversionError(f"{path} does not exist") from None
    except UnicodeDecodeError as err:
        raise ConversionError(f"{path}: not UTF-8 text ({err})") from None


def field(record: Any, key: str, where: str) -> Any:
    """record[key], or ConversionError saying which field is missing and which exist."""
    if not isinstance(record, Mapping):
        raise ConversionError(f"{where}: expected a JSON object with field {key!r}, got {type(record).__name__}")
    if key not in record:
        raise ConversionError(f"{where}: missing field {key!r} (fields: {sorted(record)})")
    return record[key]


def reference_rows(row: dict, column: str, references: list[str], split: str) -> Iterator[dict]:
    """Rows of one item with several reference texts, as OFA trains and scores them: on a train split one row
    per reference, otherwise one row whose `column` lists every reference (metrics score against all)."""
    if split_role(split) == "train":
        yield from ({**row, column: reference} for reference in references)
    else:
        yield {**row, column: list(references)}


class AnswerSet:
    """The closed answer set of a QA benchmark: the train conversion keeps the `size` most frequent training
    answers and saves them as answers.txt in the shard folder; the other splits' conversions read it back."""

    def __init__(self, answers: Iterable[str]):
        self.answers = list(answers)
        self.members = set(self.answers)

    @classmethod
    def for_split(cls, destdir: str, split: str, training_answers: Callable[[], Iterable[str]],
                  size: Optional[int]) -> "AnswerSet":
        """Choose and save the set on a train split; read the saved one on valid splits (test splits keep
        every answer and need none)."""
        path = os.path.join(destdir, ANSWERS_FILE)
        if split_role(split) == "test":
            return cls(())
        if split_role(split) == "train":
            answer_set = cls(answer for answer, _ in collections.Counter(training_answers()).most_common(size))
            os.makedirs(destdir, exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.writelines(answer + "\n" for answer in answer_set.answers)
            return answer_set
        if not os.path.isfile(path):
            raise ConversionError(f"{path} does not exist: convert the train split into {destdir} first (it chooses "
                                  f"the closed answer set that the other splits are checked against)")
        with open(path, encoding="utf-8") as handle:
            return cls(line.rstrip("\n") for line in handle if line.strip())

    def targets(self, answers: list[str], split: str) -> Union[list[str], Skip]:
        """A row's answers as the split needs them. train: only the candidates, repeats kept (the model can
        only learn those; one is drawn per epoch); valid: all of them, the most frequent candidate first (the
        first is the valid-loss target; metrics score against all); test: all, unchanged. A train/valid row
        without any candidate answer is a Skip."""
        role = split_role(split)
        if role == "test":
            return list(answers)
        kept = [answer for answer in answers if answer in self.members]
        if not kept:
            return Skip(f"no answer among the {len(self.answers)} candidate answers")
        if role == "train":
            return kept
        counts = collections.Counter(answers)
        return sorted(answers, key=lambda answer: (answer not in self.members, -counts[answer]))
