"""The per-row work of ofasys-preprocess: read a row, turn its media cells into encoded file bytes and check it
against the instruction; run over a whole source in worker processes, and bad rows as one-line reasons."""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Iterator
from typing import Any, Optional

import torch

from ..contracts import SampleContext
from ..instruction import Instruction, InstructionError
from ..media import MediaError, encoded_source
from ..preprocess.config import DataConfig
from ..vocab import Vocabulary
from .encode import RowEncoder
from .rows import RowSource

TASK_NAME = "ofasys-preprocess"  # the task the instruction's RowEncoder names in its errors
MEDIA_FORMS = "a path (relative to the data file's folder), an http(s) URL, bytes, base64, a data: URI or {'bytes', 'path'}"

Prepared = tuple[int, Optional[dict], Optional[str]]  # (index, row, None) or (index, None, one-line reason)


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
    data_cfg: Optional[DataConfig] = None
    code_columns: frozenset = frozenset()  # columns whose images are stored as their image codes
    _encoder: Any = dataclasses.field(default=None, repr=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_encoder": None}

    def __call__(self, index: int) -> Prepared:
        raw: dict = {}
        try:
            raw = self.source[index]
            row = {name: self._media_bytes(name, value) if name in self.media_columns else value
                   for name, value in raw.items()}
            if self.instruction is not None:
                self._validate(row, index)
            for column in self.code_columns:
                row[column] = self._codes(column, row[column])
        except (ValueError, OSError) as err:  # DataError, MediaError, InstructionError, ShardError are ValueErrors
            where, message = self.source.where(index), row_problem(err)
            located = message if message.startswith(where) else f"{where}: {message}"  # a DataError names it already
            return index, None, f"{located}{self._media_origin(err, raw)}"
        return index, row, None

    def _media_bytes(self, column: str, value: Any) -> Optional[bytes]:
        if value is None:
            return None
        try:
            with encoded_source(value, self.source.base_dir, None, "media", MEDIA_FORMS).opened() as file:
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
            self._encoder = RowEncoder(TASK_NAME, [Instruction.parse(self.instruction)], self.vocab, self.data_cfg,
                                       check_closed_set=False)
        return self._encoder

    def _codes(self, column: str, value: Any) -> Optional[list]:
        """The image codes of a code column's value, by its image_code slot (encoded already by _validate)."""
        if value is None:
            return None
        preprocessor = next(p for slot, p in self.encoder().preprocessors.items() if slot.name == column)
        return preprocessor.codes(value, self.source.base_dir).tolist()

    def _validate(self, row: dict, index: int) -> None:
        context = SampleContext(split=bind_split(self.split), task=TASK_NAME, row_index=index,
                                base_dir=self.source.base_dir)
        self.encoder().encode(row, context)


def bind_split(split: str) -> str:
    """The instruction split a shard split is checked as: train*, test* (targets optional), anything else valid."""
    return next((name for name in ("train", "test") if split.startswith(name)), "valid")


def row_problem(err: BaseException) -> str:
    """An error's message on one line, without the task/row prefix (the caller names file and row) and without
    an instruction's caret drawing (an InstructionError is quoted with the character position instead)."""
    if isinstance(err, InstructionError):
        message = err.one_line()
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


def _prepare_in_worker(index: int) -> Prepared:
    return _worker_preparer(index)


def prepared_rows(preparer: RowPreparer, count: int, workers: int) -> Iterator[Prepared]:
    """`preparer(i)` for i in 0..count-1, in order, computed in `workers` processes when workers > 1."""
    if workers <= 1:
        yield from map(preparer, range(count))
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # HF tokenizers warn when used across a fork
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    chunk = max(1, min(64, count // (workers * 8)))
    with multiprocessing.get_context(method).Pool(workers, _init_worker, (preparer,)) as pool:
        yield from pool.imap(_prepare_in_worker, range(count), chunksize=chunk)
