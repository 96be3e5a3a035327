"""Task "spider": text-to-SQL (Spider). The database schema comes from the row's `database` column, or is
read from the .sqlite file its `db_path` column names."""
from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from typing import Optional

from ..generators.config import GenerationConfig
from ..registry import register_task
from .base import Task


@register_task("spider")
class Spider(Task):
    """Question + schema [[table, "col , col"], ...] -> SQL; exact match. Rows give `database` or `db_path`
    (a .sqlite file, relative to the data file's folder), from which the schema is read."""

    family = "tables"
    default_instruction = ('<BOS> " [TEXT:src] " ; structured knowledge: " [STRUCT:database,max_length=876] " . '
                           'generating sql code. <EOS> -> <BOS> [TEXT:tgt] <EOS>')
    default_metric = "exact_match"
    default_generation = GenerationConfig(max_len_b=128, no_repeat_ngram_size=0)  # SQL repeats n-grams

    def prepare_row(self, row: dict, base_dir: Optional[str]) -> dict:
        if row.get("database") is not None:
            return row
        if row.get("db_path") is None:
            raise ValueError(f"task {self.name!r}: a row needs the schema in 'database' ([[table, \"col , col\"], "
                             f"...]) or 'db_path', the .sqlite file to read it from; row keys: {sorted(row)}")
        path = os.path.join(base_dir, row["db_path"]) if base_dir else row["db_path"]
        return {**row, "database": schema_from_sqlite(path)}


def schema_from_sqlite(path: str) -> list[list[str]]:
    """The schema of a SQLite database as Spider's input: [[table, "col , col , ..."], ...] in creation order,
    names lowercased (as the seed's examples show)."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise ValueError(f"database file {path} does not exist (column 'db_path' must name a .sqlite file)")
    return [list(entry) for entry in _read_schema(path, os.stat(path).st_mtime_ns)]


@functools.lru_cache(maxsize=256)
def _read_schema(path: str, mtime_ns: int) -> tuple:
    """Cached per file version (mtime): Spider has ~200 databases shared by thousands of rows."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            tables = [name for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]
            schema = []
            for table in tables:
                columns = [info[1] for info in connection.execute(f'PRAGMA table_info("{quoted(table)}")')]
                schema.append((table.lower(), " , ".join(column.lower() for column in columns)))
    except sqlite3.Error as err:
        raise ValueError(f"cannot read the schema of {path}: {err} (expected a SQLite database file)") from err
    return tuple(schema)


def quoted(name: str) -> str:
    return name.replace('"', '""')
