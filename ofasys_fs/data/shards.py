"""Shard folders: `manifest.json` plus one MMIDIDX dataset per (split, column), storing rows losslessly.

Layout and encodings are documented for users in docs/data_format.md. Text is UTF-8, media the original
encoded bytes, everything else canonical JSON; a None cell is an empty item listed in `null_rows`.
The manifest is written last by atomic rename: a folder without it is not a shard.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Optional, Union

import numpy as np

from .indexed import IndexedDataset, IndexedWriter, PathLike, ShardError, checked_position, fsync_dir

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
KINDS = ("text", "media", "json")
RESERVED_MANIFEST_KEYS = frozenset({"version", "splits", "tokenizer_hash", "skipped_rows"})
_LOCK_FILE = ".manifest.lock"
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_\-]+")
# (format, ((offset, signature), ...)): container families recognised from the first bytes.
_MEDIA_SIGNATURES = (
    ("jpg", ((0, b"\xff\xd8\xff"),)), ("png", ((0, b"\x89PNG\r\n\x1a\n"),)), ("gif", ((0, b"GIF8"),)),
    ("webp", ((0, b"RIFF"), (8, b"WEBP"))), ("bmp", ((0, b"BM"),)), ("tiff", ((0, b"II*\x00"),)),
    ("tiff", ((0, b"MM\x00*"),)), ("wav", ((0, b"RIFF"), (8, b"WAVE"))), ("flac", ((0, b"fLaC"),)),
    ("ogg", ((0, b"OggS"),)), ("mp3", ((0, b"ID3"),)), ("mp4", ((4, b"ftyp"),)),
    ("webm", ((0, b"\x1a\x45\xdf\xa3"),)), ("avi", ((0, b"RIFF"), (8, b"AVI "))),
)


@dataclasses.dataclass(frozen=True)
class ColumnSpec:
    """How a column is stored: `kind` text|media|json (None: the first non-null value decides) and,
    for media, the original file `format` (extension without dot; None: sniffed from the bytes)."""

    kind: Optional[str] = None
    format: Optional[str] = None

    def __post_init__(self):
        if self.kind is not None and self.kind not in KINDS:
            raise ShardError(f"column kind {self.kind!r} is unknown; expected one of {KINDS}")
        if self.format is not None:
            if self.kind != "media":
                raise ShardError(f"a column format ({self.format!r}) needs kind 'media', got {self.kind!r}")
            object.__setattr__(self, "format", self.format.lstrip(".").lower())


class _Column:
    """Writer-side state of one column: its kind, the formats seen, the null rows and the MMIDIDX writer."""

    def __init__(self, name: str, spec: ColumnSpec, optional: bool):
        self.name, self.optional = name, optional
        self.kind, self.declared_kind, self.declared_format = spec.kind, spec.kind, spec.format
        self.formats: set[Optional[str]] = set()
        self.null_rows: list[int] = []
        self.writer: Optional[IndexedWriter] = None

    def manifest_entry(self) -> dict:
        entry: dict[str, Any] = {"kind": self.kind or "json", "dtype": "uint8"}
        sniffed = next(iter(self.formats)) if len(self.formats) == 1 else None
        if self.kind == "media" and (self.declared_format or sniffed):
            entry["format"] = self.declared_format or sniffed
        if self.null_rows:
            entry["null_rows"] = self.null_rows
        return entry


class ShardWriter:
    """Writes one split of a shard folder row by row; `finalize` commits it into `manifest.json`.

    The column set is fixed by the first row's keys plus the names in `columns` (name -> ColumnSpec or
    kind string, to force a kind or media format) and in `optional` (columns a row may lack: stored as
    None). A row that raises in `add_row` was not written to any column, so callers can skip and count it.
    """

    def __init__(self, destdir: PathLike, split: str, columns: Optional[Mapping[str, Union[ColumnSpec, str]]] = None,
                 optional: Iterable[str] = ()):
        if not isinstance(split, str) or not _SPLIT_NAME.fullmatch(split):
            raise ShardError(f"split name {split!r} must be letters, digits, '_' or '-' (it prefixes file names)")
        self.destdir, self.split = os.fspath(destdir), split
        if os.path.exists(self.destdir) and not os.path.isdir(self.destdir):
            raise ShardError(f"{self.destdir} is a file; expected a shard folder (or a path where one can be made)")
        os.makedirs(self.destdir, exist_ok=True)
        if is_shard_dir(self.destdir):
            read_manifest(self.destdir)  # fail now, not after hours of writing, on an unreadable manifest
        self.optional = frozenset(optional)
        self.rows = 0
        self._rows_offered = 0  # add_row calls, rejected rows included: error messages count input rows
        self._columns: Optional[dict[str, _Column]] = None
        self._state = "open"
        self._declared = {name: spec if isinstance(spec, ColumnSpec) else ColumnSpec(kind=spec)
                          for name, spec in (columns or {}).items()}
        for name in sorted(self.optional - set(self._declared)):
            self._declared[name] = ColumnSpec()
        for name in self._declared:
            _check_column_name(name, f"{self.destdir} (split {self.split})")

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.abort()

    def _new_columns(self, row_names: Iterable[str], where: str) -> dict[str, _Column]:
        """Columns for the first row's names followed by the declared ones, in that order."""
        row_names = list(row_names)
        for name in row_names:
            _check_column_name(name, where)
        names = dict.fromkeys([*row_names, *self._declared])
        return {name: _Column(name, self._declared.get(name, ColumnSpec()), name in self.optional) for name in names}

    def _fix_columns(self, columns: dict[str, _Column]) -> None:
        self._columns = columns
        for column in columns.values():
            column.writer = IndexedWriter(self._prefix(column.name), np.uint8)

    def _prefix(self, column: str) -> str:
        return os.path.join(self.destdir, f"{self.split}.{column}")

    def add_row(self, row: Mapping[str, Any]) -> None:
        """Encode and append one row; ShardError naming the row and column when a value does not fit."""
        if self._state != "open":
            raise ShardError(f"{self.destdir} (split {self.split}): add_row() after {self._state}")
        where = f"{self.destdir} (split {self.split}), row {self._rows_offered}"
        self._rows_offered += 1
        if not isinstance(row, Mapping):
            raise ShardError(f"{where}: expected a dict of columns, got {type(row).__name__}")
        columns = self._columns if self._columns is not None else self._new_columns(row, where)
        if not columns:
            raise ShardError(f"{where}: the first row has no columns")
        unknown = [name for name in row if name not in columns]
        if unknown:
            raise ShardError(f"{where}: column {unknown[0]!r} is not among the columns {list(columns)} fixed by "
                             f"the first row and the declared columns; declare it optional")
        cells = [self._encode_cell(column, row, where) for column in columns.values()]
        if self._columns is None:
            self._fix_columns(columns)
        for column, (kind, payload, media_format) in zip(columns.values(), cells):
            if payload is None:
                column.null_rows.append(self.rows)
                payload = b""
            else:
                column.kind = kind
                if kind == "media":
                    column.formats.add(media_format)
            column.writer.add(payload)
        self.rows += 1

    @staticmethod
    def _encode_cell(column: _Column, row: Mapping[str, Any],
                     where: str) -> tuple[Optional[str], Optional[bytes], Optional[str]]:
        """(kind, bytes or None for a null, sniffed media format) of one cell, without changing any state."""
        where = f"{where}, column {column.name!r}"
        if column.name not in row and not column.optional:
            raise ShardError(f"{where}: missing; earlier rows have it (declare it optional to store None)")
        value = row.get(column.name)
        kind = _value_kind(value)
        if kind is None:
            return None, None, None
        if column.declared_kind == "json" and kind == "text":
            kind = "json"
        if column.kind is not None and kind != column.kind:
            first = "the declaration" if column.declared_kind else "the column's first value"
            mixable = column.declared_kind is None and {kind, column.kind} == {"text", "json"}
            hint = " (declare the column kind 'json' to store mixed values)" if mixable else ""
            raise ShardError(f"{where}: got {type(value).__name__} ({kind}), but {first} makes it a "
                             f"{column.kind} column{hint}")
        try:
            return kind, _encode(kind, value), _sniff_media_format(value) if kind == "media" else None
        except (TypeError, ValueError) as err:
            raise ShardError(f"{where}: cannot store the value as {kind}: {err}") from None

    def finalize(self, extra_manifest: Optional[Mapping[str, Any]] = None, *, tokenizer_hash: Optional[str] = None,
                 skipped_rows: int = 0) -> dict:
        """Rename the column files into place, then merge this split into `manifest.json` (written last,
        atomically). `extra_manifest` keys (e.g. instruction, source) go to the manifest's top level."""
        if self._state != "open":
            raise ShardError(f"{self.destdir} (split {self.split}): finalize() after {self._state}")
        extra = dict(extra_manifest or {})
        clash = RESERVED_MANIFEST_KEYS.intersection(extra)
        if clash:
            raise ShardError(f"extra_manifest may not set the reserved keys {sorted(clash)}")
        if self._columns is None:
            self._fix_columns(self._new_columns((), ""))
        columns = self._columns
        split_entry = {"rows": self.rows, "columns": {name: c.manifest_entry() for name, c in columns.items()}}
        with _manifest_lock(self.destdir):
            manifest = read_manifest(self.destdir) if is_shard_dir(self.destdir) else _empty_manifest()
            previous_hash = manifest.get("tokenizer_hash")
            if tokenizer_hash is not None and previous_hash not in (None, tokenizer_hash):
                raise ShardError(f"{self.destdir}: split {self.split!r} was checked with tokenizer {tokenizer_hash}, "
                                 f"but {MANIFEST} records tokenizer {previous_hash} for the other splits")
            if self.split in manifest["splits"]:  # withdraw the old split before its files are replaced
                old_columns = _split_entry(manifest, self.destdir, self.split)["columns"]
                del manifest["splits"][self.split]
                manifest["skipped_rows"].pop(self.split, None)
                _write_manifest(self.destdir, manifest)
                for name in set(old_columns) - set(columns):
                    for path in (self._prefix(name) + ".bin", self._prefix(name) + ".idx"):
                        with contextlib.suppress(FileNotFoundError):
                            os.remove(path)
            for column in columns.values():
                column.writer.finalize()
            manifest["splits"][self.split] = split_entry
            manifest["skipped_rows"][self.split] = int(skipped_rows)
            manifest["tokenizer_hash"] = tokenizer_hash if tokenizer_hash is not None else previous_hash
            manifest.update(extra)
            _write_manifest(self.destdir, manifest)
        self._state = "finalize()"
        return manifest

    def abort(self) -> None:
        """Delete the temporary column files of an unfinished split; a finalized split is left alone."""
        if self._state != "open":
            return
        self._state = "abort()"
        for column in (self._columns or {}).values():
            column.writer.abort()


class ShardDataset:
    """Random access to one split of a shard folder: `ds[i]` is the row dict with every column decoded
    back to its original value (text -> str, json -> value, media -> bytes, null -> None)."""

    def __init__(self, folder: PathLike, split: str):
        self.folder, self.split = os.fspath(folder), split
        self.manifest = read_manifest(self.folder)
        entry = _split_entry(self.manifest, self.folder, split)
        self.columns: dict[str, dict] = entry["columns"]
        self._length: int = entry["rows"]
        self._null_rows = {name: frozenset(spec.get("null_rows", ())) for name, spec in self.columns.items()}
        self._data = {name: IndexedDataset(os.path.join(self.folder, f"{split}.{name}")) for name in self.columns}
        for name, data in self._data.items():
            if len(data) != self._length or data.dtype != np.uint8:
                raise ShardError(f"{data.prefix}.idx: {len(data)} {data.dtype.name} items, but {MANIFEST} says "
                                 f"{self._length} uint8 rows for split {split!r} (files from another run?)")

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict:
        position = checked_position(index, self._length, f"{self.folder} (split {self.split}): row")
        return {name: self._decode(name, position) for name in self.columns}

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(self._length))

    def _decode(self, name: str, position: int) -> Any:
        if position in self._null_rows[name]:
            return None
        raw = self._data[name].item_bytes(position)
        kind = self.columns[name]["kind"]
        try:
            if kind == "text":
                return raw.decode("utf-8")
            if kind == "json":
                return json.loads(raw)
        except (ValueError, RecursionError) as err:  # UnicodeDecodeError, JSONDecodeError; nesting past the limit
            raise ShardError(f"{self._data[name].prefix}.bin: row {position} is not valid {kind} "
                             f"({err or type(err).__name__})") from None
        return raw


def is_shard_dir(path: PathLike) -> bool:
    """True when `path` is a folder holding a `manifest.json` (the commit marker of a finished preprocess)."""
    return os.path.isfile(os.path.join(os.fspath(path), MANIFEST))


def read_manifest(folder: PathLike) -> dict:
    """The parsed and checked `manifest.json` of a shard folder; ShardError saying what is wrong."""
    folder = os.fspath(folder)
    path = os.path.join(folder, MANIFEST)
    if not os.path.isdir(folder):
        raise ShardError(f"{folder}: no such shard folder")
    if not os.path.isfile(path):
        raise ShardError(f"{folder}: not a shard folder: {MANIFEST} is missing. ofasys-preprocess writes it last, "
                         f"so the preprocess ran incompletely (interrupted or failed); rerun it")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (ValueError, OSError) as err:
        raise ShardError(f"{path}: unreadable manifest ({err})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise ShardError(f"{path}: expected a JSON object with a 'splits' object")
    if manifest.get("version") != FORMAT_VERSION:
        raise ShardError(f"{path}: shard format version {manifest.get('version')!r}, this ofasys_fs reads "
                         f"version {FORMAT_VERSION}")
    manifest.setdefault("skipped_rows", {})
    manifest.setdefault("tokenizer_hash", None)
    return manifest


def _split_entry(manifest: dict, folder: str, split: str) -> dict:
    path = os.path.join(folder, MANIFEST)
    if split not in manifest["splits"]:
        raise ShardError(f"{folder}: no split {split!r} in {MANIFEST}; it has {sorted(manifest['splits'])}")
    entry = manifest["splits"][split]
    rows, columns = (entry.get("rows"), entry.get("columns")) if isinstance(entry, dict) else (None, None)
    if type(rows) is not int or rows < 0 or not isinstance(columns, dict):
        raise ShardError(f"{path}: split {split!r} needs a row count and a 'columns' object")
    for name, spec in columns.items():
        _check_column_name(name, path)
        if not isinstance(spec, dict) or spec.get("kind") not in KINDS:
            raise ShardError(f"{path}: column {name!r} of split {split!r} has no kind among {KINDS}")
        nulls = spec.get("null_rows", [])
        if not isinstance(nulls, list) or not all(type(row) is int and 0 <= row < rows for row in nulls):
            raise ShardError(f"{path}: column {name!r} of split {split!r}: null_rows must be a list of row numbers "
                             f"in 0..{rows - 1}")
    return entry


def _check_column_name(name: Any, where: str) -> None:
    if not isinstance(name, str) or not name or name.startswith(".") or any(c in name for c in "/\\\x00"):
        raise ShardError(f"{where}: column name {name!r} cannot name a file (non-empty str without '/', '\\', "
                         f"NUL or a leading '.')")


def _empty_manifest() -> dict:
    return {"version": FORMAT_VERSION, "splits": {}, "tokenizer_hash": None, "skipped_rows": {}}


def _write_manifest(folder: str, manifest: dict) -> None:
    """Atomically replace `manifest.json`: write a temporary file, fsync it, rename, fsync the folder."""
    temp = os.path.join(folder, MANIFEST + ".partial")
    with open(temp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, os.path.join(folder, MANIFEST))
    fsync_dir(folder)


@contextlib.contextmanager
def _manifest_lock(folder: str) -> Iterator[None]:
    """Serialise manifest updates of writers of different splits finishing at the same time."""
    with open(os.path.join(folder, _LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _value_kind(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, str):
        return "text"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "media"
    return "json"


def _encode(kind: str, value: Any) -> bytes:
    if kind == "text":
        return value.encode("utf-8")
    if kind == "media":
        return bytes(value)
    return json.dumps(_json_plain(value), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_plain(value: Any, at: str = "value") -> Any:
    """`value` as plain JSON types (numpy -> Python, tuple -> list); TypeError where JSON would lose data."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (np.generic, np.ndarray)):
        return _json_plain(value.tolist(), at)
    if isinstance(value, (list, tuple)):
        return [_json_plain(item, f"{at}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        bad_keys = [key for key in value if not isinstance(key, str)]
        if bad_keys:
            raise TypeError(f"{at} has the non-str key {bad_keys[0]!r}; JSON object keys are strings")
        return {key: _json_plain(item, f"{at}[{key!r}]") for key, item in value.items()}
    hint = "; media bytes go in a column of their own" if isinstance(value, (bytes, bytearray, memoryview)) else ""
    raise TypeError(f"{at} is a {type(value).__name__}, which JSON cannot store{hint}")


def _sniff_media_format(data: Union[bytes, bytearray, memoryview]) -> Optional[str]:
    head = bytes(data[:16])
    for media_format, signatures in _MEDIA_SIGNATURES:
        if all(head[offset:offset + len(sig)] == sig for offset, sig in signatures):
            return media_format
    return None
