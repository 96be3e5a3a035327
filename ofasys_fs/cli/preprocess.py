"""ofasys-preprocess: store a data file or folder losslessly as a shard folder (DESIGN §9, §11, §12).

Rows are read through a RowSource, media cells become the original encoded file bytes, and with
`--instruction` every row is bound and preprocessed before it is written. Bad rows stop the run with
one error line (exit code 2, no manifest), or are skipped and counted with `--skip-bad-rows`.
User guide: docs/data_format.md, section "ofasys-preprocess".
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Optional

import torch

from ..contracts import SampleContext
from ..data.encode import RowEncoder
from ..data.rows import DataError, RowSource, as_row_source
from ..data.shards import MANIFEST, ColumnSpec, ShardError, ShardWriter, is_shard_dir, read_manifest
from ..fetch import is_http_url
from ..instruction import Instruction, InstructionError
from ..media import MediaError, encoded_source
from ..registry import import_user_dir
from ..tokenizer import train_tokenizer
from ..vocab import Vocabulary, VocabConfig
from .arg_types import positive_int

PROG = "ofasys-preprocess"
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
TOKENIZER_FILE = "tokenizer.json"
DEFAULT_VOCAB_SIZE = 8192
DETECTION_ROWS = 100  # rows looked at to recognise media columns and text columns
MEDIA_MODALITIES = ("IMAGE", "AUDIO", "VIDEO")
MEDIA_EXTENSIONS = {
    "image": (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".tga", ".ico", ".jp2",
              ".avif"),
    "audio": (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".aiff", ".aif"),
    "video": (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg"),
}
METADATA_FILES = ("metadata.jsonl", "metadata.tsv", "metadata.parquet")
FILE_NAME_COLUMN = "file_name"
HF_DATASET_MARKERS = ("state.json", "dataset_dict.json")
_MEDIA_FORMS = "a path (relative to the data file's folder), an http(s) URL, bytes, base64, a data: URI or {'bytes', 'path'}"


class PreprocessError(Exception):
    """A problem that ends the run with one error line and exit code 2 (never a traceback)."""


# --------------------------------------------------------------------------------------------------
# Inputs


class MediaFolderRows(RowSource):
    """A folder of media files described by a metadata file (Hugging Face imagefolder convention): its
    `file_name` column names each file relative to the folder and becomes a column `image`, `audio` or
    `video` (after the first listed file's extension) holding that file."""

    def __init__(self, metadata_path: str):
        self.metadata = as_row_source(metadata_path)
        self.base_dir, self.description = os.path.dirname(os.path.abspath(metadata_path)), metadata_path
        first = self.metadata[0]
        if not isinstance(first.get(FILE_NAME_COLUMN), str):
            raise DataError(f"{self.metadata.where(0)}: a media folder's {os.path.basename(metadata_path)} needs a "
                            f"{FILE_NAME_COLUMN!r} column naming each media file; row keys: {sorted(first)}")
        self.column = media_kind(first[FILE_NAME_COLUMN]) or "media"
        if self.column in first:
            raise DataError(f"{self.metadata.where(0)}: column {self.column!r} clashes with the column made from "
                            f"{FILE_NAME_COLUMN!r}; rename it")

    def __len__(self) -> int:
        return len(self.metadata)

    def where(self, index: int) -> str:
        return self.metadata.where(index)

    def __getitem__(self, index: int) -> dict:
        row = dict(self.metadata[index])
        if FILE_NAME_COLUMN not in row:
            raise DataError(f"{self.where(index)}: no {FILE_NAME_COLUMN!r} column naming the media file")
        return {self.column: row.pop(FILE_NAME_COLUMN), **row}


def media_kind(name: str) -> Optional[str]:
    """"image", "audio" or "video" from a file name's or URL's extension; None when it is not a media name."""
    extension = os.path.splitext(name.split("?", 1)[0].split("#", 1)[0])[1].lower()
    return next((kind for kind, extensions in MEDIA_EXTENSIONS.items() if extension in extensions), None)


def open_input(path: str, split: str) -> tuple[RowSource, set[str]]:
    """The rows of `path` and the columns the input itself marks as media (HF media features, media folders)."""
    if not os.path.exists(path):
        raise PreprocessError(f"--input {path}: no such file or folder")
    if os.path.isdir(path):
        if any(os.path.isfile(os.path.join(path, marker)) for marker in HF_DATASET_MARKERS):
            return open_hf_dataset(path, split)
        for folder in (os.path.join(path, split), path):
            metadata = next((os.path.join(folder, name) for name in METADATA_FILES
                             if os.path.isfile(os.path.join(folder, name))), None)
            if metadata is not None:
                rows = MediaFolderRows(metadata)
                return rows, {rows.column}
    return as_row_source(path, split), set()


def open_hf_dataset(path: str, split: str) -> tuple[RowSource, set[str]]:
    """A Hugging Face dataset saved with `save_to_disk`; media features are read undecoded (original bytes)."""
    try:
        import datasets
    except ImportError:
        raise PreprocessError(f"--input {path} is a Hugging Face dataset folder (saved with save_to_disk), and "
                              f"reading it needs the 'datasets' package: pip install datasets") from None
    data = datasets.load_from_disk(path)
    if not hasattr(data, "features"):  # a DatasetDict: one Dataset per split
        if split not in data:
            raise PreprocessError(f"--input {path}: the Hugging Face DatasetDict has no split {split!r}; "
                                  f"it has {sorted(data)} (pick one with --split)")
        data = data[split]
    media = set()
    for name, feature in data.features.items():
        if type(feature).__name__ in ("Image", "Audio", "Video") and dataclasses.is_dataclass(feature):
            media.add(name)
            if getattr(feature, "decode", False):
                data = data.cast_column(name, dataclasses.replace(feature, decode=False))
    rows = as_row_source(data, split)
    rows.description = f"{path} (Hugging Face dataset, split {split})"
    return rows, media


# --------------------------------------------------------------------------------------------------
# Column plan


def looks_like_media(value: Any, base_dir: Optional[str]) -> bool:
    """Bytes, a {'bytes', 'path'} dict, or a media-extension name of an existing file or an http(s) URL."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True
    if isinstance(value, Mapping):
        return bool(value) and set(value) <= {"bytes", "path"}
    if not isinstance(value, str) or media_kind(value) is None:
        return False
    return is_http_url(value) or os.path.isfile(os.path.join(base_dir or "", value))


def sample_rows(source: RowSource) -> list[dict]:
    """The first readable rows (up to DETECTION_ROWS); unreadable ones are reported in the writing pass."""
    rows = []
    for index in range(min(len(source), DETECTION_ROWS)):
        try:
            rows.append(source[index])
        except (ValueError, OSError):
            continue
    return rows


def choose_media_columns(explicit: Optional[list[str]], instruction: Optional[Instruction], samples: list[dict],
                         base_dir: Optional[str]) -> set[str]:
    """--media-columns, else the instruction's IMAGE/AUDIO/VIDEO slots, else columns whose values look like media."""
    if explicit is not None:
        return set(explicit)
    if instruction is not None:
        return {slot.name for slot in (*instruction.encoder, *instruction.decoder)
                if slot.modality in MEDIA_MODALITIES and slot.name and not slot.in_repeat and "." not in slot.name}
    return {name for row in samples for name, value in row.items() if looks_like_media(value, base_dir)}


def default_text_columns(samples: list[dict], media_columns: set[str]) -> list[str]:
    """Columns whose sampled values are strings and that do not hold media: the tokenizer's corpus."""
    names = dict.fromkeys(name for row in samples for name, value in row.items()
                          if isinstance(value, str) and name not in media_columns)
    return list(names)


# --------------------------------------------------------------------------------------------------
# Per-row work (runs in the worker processes with --workers N)


@dataclasses.dataclass
class RowPreparer:
    """Reads row `index`, turns its media cells into encoded bytes and validates it against the instruction.

    Called as `preparer(index) -> (index, row, None)` or `(index, None, one-line reason)`; it is pickled into
    worker processes, where the RowEncoder is built once on first use.
    """

    source: RowSource
    media_columns: frozenset
    split: str
    instruction: Optional[str] = None
    vocab: Optional[Vocabulary] = None
    _encoder: Any = dataclasses.field(default=None, repr=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_encoder": None}

    def __call__(self, index: int) -> tuple[int, Optional[dict], Optional[str]]:
        raw: dict = {}
        try:
            raw = self.source[index]
            row = {name: self._media_bytes(name, value) if name in self.media_columns else value
                   for name, value in raw.items()}
            if self.instruction is not None:
                self._validate(row, index)
        except (ValueError, OSError) as err:  # DataError, MediaError, InstructionError, ShardError are ValueErrors
            where, message = self.source.where(index), one_line(err)
            located = message if message.startswith(where) else f"{where}: {message}"  # a DataError names it already
            return index, None, f"{located}{self._media_origin(err, raw)}"
        return index, row, None

    def _media_bytes(self, column: str, value: Any) -> Optional[bytes]:
        if value is None:
            return None
        try:
            with encoded_source(value, self.source.base_dir, None, "media", _MEDIA_FORMS).opened() as file:
                return file.read()
        except MediaError as err:
            raise err.add_context(column=column) from None

    def _media_origin(self, err: BaseException, raw: dict) -> str:
        """" (cell: 'img/3.png')" when a media column failed on the bytes read from that cell, else ""."""
        column = getattr(err, "column", None)
        value = raw.get(column) if column in self.media_columns else None
        if not isinstance(value, str) or repr(value) in str(err):
            return ""
        return f" (cell: {value!r})" if len(value) <= 200 else f" (cell: {value[:200]!r}...)"

    def encoder(self) -> RowEncoder:
        """The instruction's RowEncoder, built on first use; call it once early so instruction errors surface
        before any row is read. Closed-set answers are not checked: the task's answer set is only known when
        training (its answers, or its training targets), and a test split may have no targets at all."""
        if self._encoder is None:
            self._encoder = RowEncoder(PROG, [Instruction.parse(self.instruction)], self.vocab, None,
                                       check_closed_set=False)
        return self._encoder

    def _validate(self, row: dict, index: int) -> None:
        context = SampleContext(split=bind_split(self.split), task=PROG, row_index=index, base_dir=self.source.base_dir)
        self.encoder().encode(row, context)


def bind_split(split: str) -> str:
    """The instruction split a shard split is checked as: train*, test* (targets optional), anything else valid."""
    return next((name for name in ("train", "test") if split.startswith(name)), "valid")


def one_line(err: BaseException) -> str:
    """An error's message on one line, without the task/row prefix (the caller names file and row) and without
    an instruction's caret drawing (an InstructionError is quoted with the character position instead)."""
    if isinstance(err, InstructionError):
        message = f"{err.reason} (at character {err.column} of the instruction {err.instruction!r})"
    elif isinstance(getattr(err, "reason", None), str) and hasattr(err, "column"):  # MediaError, EncodeError
        message = (f"column {err.column!r}: " if err.column else "") + err.reason
    else:
        message = str(err) or type(err).__name__
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) >= 3 and lines[-1] == "^":
        lines = lines[:-2]
    return " ".join(lines)


_worker_preparer: Optional[RowPreparer] = None


def _init_worker(preparer: RowPreparer) -> None:
    global _worker_preparer
    torch.set_num_threads(1)  # N workers on N cores; intra-op threads would oversubscribe them
    _worker_preparer = preparer


def _prepare_in_worker(index: int) -> tuple[int, Optional[dict], Optional[str]]:
    return _worker_preparer(index)


def prepared_rows(preparer: RowPreparer, count: int, workers: int) -> Iterator[tuple[int, Optional[dict], Optional[str]]]:
    """`preparer(i)` for i in 0..count-1, in order, computed in `workers` processes when workers > 1."""
    if workers <= 1:
        yield from map(preparer, range(count))
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # HF tokenizers warn when used across a fork
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    chunk = max(1, min(64, count // (workers * 8)))
    with multiprocessing.get_context(method).Pool(workers, _init_worker, (preparer,)) as pool:
        yield from pool.imap(_prepare_in_worker, range(count), chunksize=chunk)


# --------------------------------------------------------------------------------------------------
# Tokenizer


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside a cell (reference lists, nested tables), depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings_in(item)


def tokenizer_corpus(source: RowSource, columns: list[str]) -> Iterator[str]:
    """The strings of `columns` over all readable rows (bad rows are reported by the writing pass)."""
    for index in range(len(source)):
        try:
            row = source[index]
        except (ValueError, OSError):
            continue
        for name in columns:
            yield from strings_in(row.get(name))


def choose_vocabulary(args: argparse.Namespace, source: RowSource, samples: list[dict],
                      media_columns: set[str]) -> tuple[Optional[Vocabulary], Optional[str]]:
    """(vocabulary to validate and hash with, trained tokenizer JSON to save or None)."""
    if args.train_tokenizer:
        columns = args.text_columns or default_text_columns(samples, media_columns)
        if not columns:
            raise PreprocessError(f"--train-tokenizer: no text columns found in {source.description}; "
                                  f"name them with --text-columns a,b")
        tokenizer_json = train_tokenizer(tokenizer_corpus(source, columns), args.vocab_size)
        return Vocabulary(VocabConfig(), tokenizer_json), tokenizer_json
    saved = os.path.join(args.destdir, TOKENIZER_FILE)
    if os.path.isfile(saved) and is_shard_dir(args.destdir):
        return Vocabulary.from_tokenizer_file(saved), None  # the tokenizer trained for another split
    return (Vocabulary.default() if args.instruction is not None else None), None


def check_tokenizer_agrees(destdir: str, vocab: Optional[Vocabulary]) -> None:
    """Refuse before writing when the folder's other splits were checked with another tokenizer."""
    if vocab is None or not is_shard_dir(destdir):
        return
    recorded = read_manifest(destdir).get("tokenizer_hash")
    if recorded not in (None, vocab.tokenizer_hash):
        raise PreprocessError(f"{destdir}: {MANIFEST} records tokenizer {recorded} for its splits, but this run uses "
                              f"{vocab.tokenizer_hash}; write to another --destdir, or preprocess with the same "
                              f"tokenizer")


def write_text_atomically(path: str, text: str) -> None:
    """Write `path` through a temporary file and a rename, so that it is never half written."""
    temp = path + ".partial"
    with open(temp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


# --------------------------------------------------------------------------------------------------
# Writing


def check_columns(row: dict, expected: list[str], where: str) -> Optional[str]:
    """Why `row` does not have exactly the first row's columns, or None."""
    missing = [name for name in expected if name not in row]
    if missing:
        return (f"{where}, column {missing[0]!r}: missing; every row needs the first row's columns {expected} "
                f"(write null for an empty cell)")
    extra = [name for name in row if name not in expected]
    if extra:
        return f"{where}, column {extra[0]!r}: not in the first row's columns {expected}; every row has the same columns"
    return None


def write_split(args: argparse.Namespace, preparer: RowPreparer, vocab: Optional[Vocabulary],
                tokenizer_json: Optional[str]) -> dict:
    """Write all good rows of the input into the split; returns the committed manifest."""
    source, skipped, columns = preparer.source, 0, None
    specs = {name: ColumnSpec("media") for name in preparer.media_columns}
    with ShardWriter(args.destdir, args.split, columns=specs) as writer, \
            contextlib.closing(prepared_rows(preparer, len(source), args.workers)) as results:
        for index, row, problem in results:
            if row is not None:
                if columns is None:
                    columns = list(row)
                    absent = sorted(set(preparer.media_columns) - set(columns))
                    if absent:
                        raise PreprocessError(f"{source.where(index)}: media column(s) {absent} are not columns of "
                                              f"the rows; they have {columns}")
                problem = check_columns(row, columns, source.where(index))
            if problem is None:
                try:
                    writer.add_row(row)
                    continue
                except ShardError as err:
                    problem = f"{source.where(index)}: {one_line(err)}"
            if not args.skip_bad_rows:
                raise PreprocessError(problem)
            skipped += 1
            print(f"{PROG}: skipped {problem}", file=sys.stderr)
        if writer.rows == 0:
            raise PreprocessError(f"{source.description}: no rows to write ({skipped} skipped as bad)")
        extra = {"source": args.input}
        if args.instruction:
            extra["instruction"] = args.instruction
        if tokenizer_json is not None:
            write_text_atomically(os.path.join(args.destdir, TOKENIZER_FILE), tokenizer_json)
            extra["tokenizer"] = TOKENIZER_FILE
        return writer.finalize(extra, tokenizer_hash=vocab.tokenizer_hash if vocab else None, skipped_rows=skipped)


def preprocess(args: argparse.Namespace) -> dict:
    """The whole run; raises PreprocessError (or a ValueError from the data) on bad input."""
    for user_dir in args.user_dir:
        import_user_dir(user_dir)
    instruction = Instruction.parse(args.instruction) if args.instruction is not None else None
    source, input_media = open_input(args.input, args.split)
    samples = sample_rows(source)
    media_columns = choose_media_columns(args.media_columns, instruction, samples, source.base_dir) | input_media
    vocab, tokenizer_json = choose_vocabulary(args, source, samples, media_columns)
    check_tokenizer_agrees(args.destdir, vocab)
    preparer = RowPreparer(source, frozenset(media_columns), args.split, args.instruction, vocab)
    if instruction is not None:
        preparer.encoder()
    return write_split(args, preparer, vocab, tokenizer_json)


# --------------------------------------------------------------------------------------------------
# Command line


def comma_list(text: str) -> list[str]:
    """argparse type: "a,b" -> ["a", "b"]."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The ofasys-preprocess argument parser."""
    parser = argparse.ArgumentParser(prog=PROG, description=(
        "Store a .jsonl/.tsv/.parquet file, a Hugging Face dataset saved with save_to_disk, or a media folder "
        "with metadata.jsonl losslessly as a shard folder (see docs/data_format.md)."))
    parser.add_argument("--input", required=True, help="data file or folder to read")
    parser.add_argument("--destdir", required=True, help="shard folder to write (other splits in it are kept)")
    parser.add_argument("--split", default="train", help="split name to write (default: train)")
    parser.add_argument("--instruction", help="validate every row by binding and preprocessing it with this instruction")
    parser.add_argument("--workers", type=positive_int, default=1, help="processes reading and validating rows")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="skip (and report on stderr, count in the manifest) rows that fail instead of stopping")
    parser.add_argument("--media-columns", type=comma_list,
                        help="columns holding media paths/URLs/bytes (default: the instruction's IMAGE/AUDIO/VIDEO "
                             "slots, else detected from the values)")
    parser.add_argument("--train-tokenizer", action="store_true",
                        help=f"train a byte-level BPE on the text columns and save it as {TOKENIZER_FILE}")
    parser.add_argument("--vocab-size", type=positive_int, default=DEFAULT_VOCAB_SIZE,
                        help=f"tokens of the trained tokenizer (default: {DEFAULT_VOCAB_SIZE})")
    parser.add_argument("--text-columns", type=comma_list,
                        help="columns to train the tokenizer on (default: every string column that is not media)")
    parser.add_argument("--user-dir", action="append", default=[], help="plugin package to import (repeatable)")
    return parser


def main(argv: Optional[Iterable[str]] = None) -> int:
    """Entry point of `ofasys-preprocess`; returns the exit code (0 done, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    if (args.vocab_size != DEFAULT_VOCAB_SIZE or args.text_columns) and not args.train_tokenizer:
        parser.error("--vocab-size and --text-columns only apply with --train-tokenizer")
    try:
        manifest = preprocess(args)
    except (PreprocessError, ValueError, OSError) as err:
        print(f"{PROG}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; split {args.split!r} was not written (no manifest entry)", file=sys.stderr)
        return EXIT_INTERRUPTED
    entry = manifest["splits"][args.split]
    columns = ", ".join(f"{name} ({spec['kind']})" for name, spec in entry["columns"].items())
    print(f"{PROG}: wrote {entry['rows']} rows of split {args.split!r} to {args.destdir} "
          f"(skipped {manifest['skipped_rows'][args.split]}); columns: {columns}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
