"""STRUCT slots: tables and database schemas linearised as OFASys does, then the shared text pipeline.

Cells of a row are joined by " : ", rows by " | ":
    [["Atlanta", "COUNTRY", "United States"], ...]      -> "Atlanta : COUNTRY : United States | ..."
    {"header": ["name", "age"], "rows": [["Ann", 30]]}  -> "name : age | Ann : 30"   (header first)
    [["singer", "singer_id , name"], ...] (DB schema)   -> "singer : singer_id , name | ..."
A string is taken as already linearised. `uncased`/`no_punctuation` apply to each cell, so the
separators survive.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional

from ..contracts import SampleContext
from ..registry import register_preprocessor
from .text import TextLikePreprocessor, as_text, normalise_text

CELL_SEPARATOR = " : "
ROW_SEPARATOR = " | "
EXPECTED = ('a table as a list of rows (lists of cells), {"header": [...], "rows": [[...], ...]}, '
            'a DB schema [[table, "col , col"], ...], or an already linearised string')


def linearise_table(value: Any, cell: Callable[[str], str] = lambda text: text) -> str:
    """The OFASys text form of a table; `cell` transforms each cell's text (normalisation)."""
    if isinstance(value, str):
        return cell(value)
    if isinstance(value, Mapping):
        if set(value) != {"header", "rows"}:
            raise ValueError(f"a STRUCT dict must have exactly the keys 'header' and 'rows', got {sorted(value)}; "
                             f"expected {EXPECTED}")
        rows = [value["header"], *_rows_of(value["rows"])]
    else:
        rows = _rows_of(value)
    return ROW_SEPARATOR.join(_linearise_row(row, index, cell) for index, row in enumerate(rows))


def _rows_of(value: Any) -> list:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"STRUCT value of type {type(value).__name__} ({value!r:.80}): expected {EXPECTED}")
    return list(value)


def _linearise_row(row: Any, index: int, cell: Callable[[str], str]) -> str:
    if isinstance(row, str):
        return cell(row)
    if not isinstance(row, (list, tuple)):
        raise ValueError(f"STRUCT row {index} is a {type(row).__name__} ({row!r:.80}); expected a list of cells")
    return CELL_SEPARATOR.join(cell("" if item is None else as_text(item, f"STRUCT row {index} cell"))
                               for item in row)


@register_preprocessor("struct")
class StructPreprocessor(TextLikePreprocessor):
    """STRUCT slot: a table or DB schema -> linearised text -> BPE ids."""

    modality = "STRUCT"

    def normalised(self, value: Any, ctx: Optional[SampleContext]) -> str:
        text = linearise_table(value, lambda cell: normalise_text(cell, self.uncased, self.no_punctuation))
        return " ".join(text.split())
