"""RowSource: one indexable view (`len`, `[i] -> dict`) over every form a task's data can take."""
from __future__ import annotations

import abc
import csv
import json
import os
import sys
from typing import Any, Callable, Optional

import numpy as np

from ..errors import DataError
from .shards import ShardDataset, is_shard_dir

FILE_SUFFIXES = (".jsonl", ".json", ".tsv", ".parquet")
IMAGE_CODES_KEY = "image_codes"  # shard manifest: column -> content hash of the image tokenizer of its codes


class RowSource(abc.ABC):
    """Random access to rows as dicts; `base_dir` is where relative media paths resolve."""

    base_dir: Optional[str] = None
    description: str = "rows"
    tokenizer_hash: Optional[str] = None  # shards: the tokenizer their rows were validated with
    image_codes: Optional[dict] = None  # shards: column -> hash of the image tokenizer whose codes it holds

    @abc.abstractmethod
    def __len__(self) -> int:
        ...

    @abc.abstractmethod
    def __getitem__(self, index: int) -> dict:
        ...

    def where(self, index: int) -> str:
        """Human-readable location of a row, for error messages."""
        return f"{self.description}, row {index}"


class SequenceRows(RowSource):
    """A list of dicts, a map-style torch Dataset of dicts, or a Hugging Face `datasets.Dataset`."""

    def __init__(self, data: Any, description: str):
        self.data, self.description = data, description

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        row = self.data[int(index)]
        if not isinstance(row, dict):
            raise DataError(f"{self.where(index)}: expected a dict of columns, got {type(row).__name__}")
        return row


class PreparedRows(RowSource):
    """Another RowSource's rows passed through a task's `prepare_row(row, base_dir) -> row` hook (e.g. a
    schema read from a database file, integer labels mapped to words); errors name the row."""

    def __init__(self, source: RowSource, prepare: Callable[[dict, Optional[str]], dict]):
        self.source, self.prepare = source, prepare
        self.base_dir, self.description = source.base_dir, source.description
        self.tokenizer_hash, self.image_codes = source.tokenizer_hash, source.image_codes

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        row = self.source[index]
        try:
            return self.prepare(row, self.base_dir)
        except (ValueError, OSError) as err:
            raise DataError(f"{self.where(index)}: {err}") from err

    def where(self, index: int) -> str:
        return self.source.where(index)


class LineFileRows(RowSource):
    """A .jsonl or .tsv file read through a byte-offset index (never loaded whole)."""

    def __init__(self, path: str):
        self.path, self.base_dir = path, os.path.dirname(os.path.abspath(path))
        self.description = path
        self.is_tsv = path.endswith(".tsv")
        self.offsets, self.line_numbers = self._index()
        if self.is_tsv:
            if not len(self.offsets):
                raise DataError(f"{path}: empty file; a .tsv needs a header line naming the columns")
            self.header = self._read_line(0).split("\t")
            repeated = sorted({name for name in self.header if self.header.count(name) > 1})
            if repeated:
                raise DataError(f"{path}, line {int(self.line_numbers[0])}: the header names the column(s) {repeated} "
                                f"more than once; each column needs its own name (one would silently replace the "
                                f"other)")
            self.offsets, self.line_numbers = self.offsets[1:], self.line_numbers[1:]
        if not len(self.offsets):
            raise DataError(f"{path}: the file has no rows")

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        offsets, numbers, pos = [], [], 0
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    offsets.append(pos)
                    numbers.append(number)
                pos += len(line)
        return np.asarray(offsets, dtype=np.int64), np.asarray(numbers, dtype=np.int64)

    def where(self, index: int) -> str:
        return f"{self.path}, line {int(self.line_numbers[index])} (row {index})"

    def _read_line(self, index: int) -> str:
        with open(self.path, "rb") as f:
            f.seek(int(self.offsets[index]))
            raw = f.readline()
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as err:
            raise DataError(f"{self.where(index)}: not valid UTF-8 text ({err.reason} at byte {err.start})") from None
        return text.removeprefix("\ufeff") if self.offsets[index] == 0 else text  # a byte order mark starts the file

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"{self.path}: row {index} out of range (0..{len(self) - 1})")
        line = self._read_line(index)
        if self.is_tsv:
            fields = next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE))
            if len(fields) != len(self.header):
                raise DataError(
                    f"{self.where(index)}: {len(fields)} tab-separated fields, expected {len(self.header)} "
                    f"as in the header {self.header}"
                )
            return dict(zip(self.header, fields))
        try:
            return parse_json_row(line)
        except ValueError as err:
            raise DataError(f"{self.where(index)}: {err}") from None


def parse_json_row(text: str) -> dict:
    """One row written as a JSON object of columns; a DataError saying why `text` is not one (invalid or too
    deeply nested JSON, a key given twice, another JSON value)."""
    try:
        row = json.loads(text, object_pairs_hook=_without_repeated_keys)
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise DataError(f"not readable JSON: nested more than {sys.getrecursionlimit()} levels deep") from None
    if not isinstance(row, dict):
        raise DataError(f"expected a JSON object of columns, got {type(row).__name__}")
    return row


def _without_repeated_keys(pairs: list) -> dict:
    """json's object hook: a key given twice would silently keep only its last value, so it is an error."""
    row = dict(pairs)
    if len(row) != len(pairs):
        seen: set = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise DataError(f"the key {repeated!r} appears twice in one JSON object; keep one (the last would silently "
                         f"replace the first)")
    return row


class ParquetRows(RowSource):
    """A .parquet file, read one row group at a time."""

    def __init__(self, path: str):
        import pyarrow.parquet as pq

        self.path, self.base_dir, self.description = path, os.path.dirname(os.path.abspath(path)), path
        try:
            meta = pq.ParquetFile(path).metadata
        except Exception as err:  # pyarrow raises several types for a bad file
            raise DataError(f"{path}: not a readable parquet file ({err})") from None
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        self.starts = np.cumsum([0] + sizes)
        if self.starts[-1] == 0:
            raise DataError(f"{path}: the file has no rows")
        self._cache: tuple[int, list] = (-1, [])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index: int) -> dict:
        import pyarrow.parquet as pq

        if not 0 <= index < len(self):
            raise IndexError(f"{self.path}: row {index} out of range (0..{len(self) - 1})")
        group = int(np.searchsorted(self.starts, index, side="right") - 1)
        if self._cache[0] != group:
            self._cache = (group, pq.ParquetFile(self.path).read_row_group(group).to_pylist())
        return self._cache[1][index - int(self.starts[group])]

    def __getstate__(self):
        return {**self.__dict__, "_cache": (-1, [])}


def resolve_path(path: str, split: str) -> str:
    """A data file, or the file/shard for `split` inside a folder."""
    if os.path.isdir(path):
        for suffix in FILE_SUFFIXES:
            candidate = os.path.join(path, split + suffix)
            if os.path.isfile(candidate):
                return candidate
        raise DataError(
            f"{path}: a folder that is neither a shard (no manifest.json) nor holds "
            f"{split}.jsonl/.tsv/.parquet"
        )
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or folder")
    return path


def open_file(path: str) -> RowSource:
    if path.endswith(".parquet"):
        return ParquetRows(path)
    if path.endswith((".jsonl", ".tsv", ".json")):
        return LineFileRows(path)
    raise DataError(f"{path}: unsupported data file; expected .jsonl, .tsv, .parquet or a shard folder")


def as_row_source(source: Any, split: str = "train") -> RowSource:
    """Wrap any supported data form (docs/design.md §3) in a RowSource."""
    if isinstance(source, RowSource):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path) and is_shard_dir(path):
            return ShardRows(ShardDataset(path, split), path, split)
        return open_file(resolve_path(path, split))
    if _is_iterable_only(source):
        raise DataError(
            f"{type(source).__name__} is an iterable-only dataset; ofasys_fs needs random access "
            f"(len and [i]) for shuffling, sharding and exact resume. Materialise it (e.g. a HF "
            f"IterableDataset via Dataset.from_generator) or write shards with ofasys-preprocess"
        )
    if hasattr(source, "__len__") and hasattr(source, "__getitem__") and not isinstance(source, (dict, bytes)):
        return SequenceRows(source, f"{type(source).__name__} ({split})")
    raise DataError(
        f"cannot read rows from {type(source).__name__}; expected a list of dicts, a HF datasets.Dataset, a "
        f"map-style torch Dataset of dicts, a .jsonl/.tsv/.parquet path or a shard folder"
    )


def _is_iterable_only(source: Any) -> bool:
    names = {cls.__name__ for cls in type(source).__mro__}
    return "IterableDataset" in names or (hasattr(source, "__iter__") and not hasattr(source, "__getitem__")
                                          and not isinstance(source, (str, bytes, dict)))


class ShardRows(RowSource):
    """A shard folder written by ofasys-preprocess."""

    def __init__(self, dataset, path: str, split: str):
        self.dataset, self.base_dir = dataset, os.path.abspath(path)
        self.description = f"{path} (split {split})"
        self.tokenizer_hash = dataset.manifest.get("tokenizer_hash")
        self.image_codes = dataset.manifest.get(IMAGE_CODES_KEY)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return self.dataset[index]
