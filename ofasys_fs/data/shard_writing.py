"""Writing the prepared rows of a preprocess input into one split of a shard folder: rows must share the first
row's columns, bad rows stop the run or are skipped and counted, and the manifest is committed last."""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Callable, Optional

from ..errors import ConfigError, DataError
from ..vocab import Vocabulary
from .row_preparer import RowPreparer, prepared_rows, row_problem
from .shards import ColumnSpec, ShardError, ShardWriter

TOKENIZER_FILE = "tokenizer.json"  # a trained tokenizer, saved next to the shards it was checked with

logger = logging.getLogger(__name__)


def log_skipped_row(reason: str) -> None:
    """The default report of a row left out with skip_bad_rows: a logged warning."""
    logger.warning("skipped %s", reason)


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


def write_text_atomically(path: str, text: str) -> None:
    """Write `path` through a temporary file and a rename, so that it is never half written."""
    temp = path + ".partial"
    with open(temp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


def write_split(preparer: RowPreparer, destdir: str, manifest_extra: dict, *, workers: int = 1,
                skip_bad_rows: bool = False, vocab: Optional[Vocabulary] = None,
                tokenizer_json: Optional[str] = None, on_skip: Callable[[str], None] = log_skipped_row) -> dict:
    """Write all good rows of `preparer.source` into split `preparer.split` of `destdir`; returns the committed
    manifest. A bad row raises DataError, or with `skip_bad_rows` is counted and its reason given to `on_skip`."""
    source, skipped, columns = preparer.source, 0, None
    specs = {name: ColumnSpec("media") for name in preparer.media_columns}
    with ShardWriter(destdir, preparer.split, columns=specs) as writer, \
            contextlib.closing(prepared_rows(preparer, len(source), workers)) as results:
        for index, row, problem in results:
            if row is not None:
                if columns is None:
                    columns = list(row)
                    absent = sorted(set(preparer.media_columns) - set(columns))
                    if absent:
                        raise ConfigError(f"{source.where(index)}: media column(s) {absent} are not columns of "
                                          f"the rows; they have {columns}")
                problem = check_columns(row, columns, source.where(index))
            if problem is None:
                try:
                    writer.add_row(row)
                    continue
                except ShardError as err:
                    problem = f"{source.where(index)}: {row_problem(err)}"
            if not skip_bad_rows:
                raise DataError(problem)
            skipped += 1
            on_skip(problem)
        if writer.rows == 0:
            raise DataError(f"{source.description}: no rows to write ({skipped} skipped as bad)")
        extra = dict(manifest_extra)
        if tokenizer_json is not None:
            write_text_atomically(os.path.join(destdir, TOKENIZER_FILE), tokenizer_json)
            extra["tokenizer"] = TOKENIZER_FILE
        return writer.finalize(extra, tokenizer_hash=vocab.tokenizer_hash if vocab else None, skipped_rows=skipped)
