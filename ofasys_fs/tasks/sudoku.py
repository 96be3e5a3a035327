"""Task "sudoku": solve a 9x9 sudoku written as a table ("0" = blank), OFASys style."""
from __future__ import annotations

from typing import Any, Optional

from ..generators.config import GenerationConfig
from ..preprocess.struct import CELL_SEPARATOR, ROW_SEPARATOR, linearise_table
from ..registry import register_task
from .base import Task

SIZE = 9
GRID_FORMS = ('a 9x9 list of digits 0-9, a string of 81 digits ("0" or "." for blanks) or the linearised '
              'text "d : d : ... | d : ..." (9 rows of 9 cells)')


@register_task("sudoku")
class Sudoku(Task):
    """Puzzle grid -> solution grid, both as the linearised table text "5 : 3 : 0 : ... | ..." (cells " : ",
    rows " | "); a row's `src`/`tgt` may also be a 9x9 list or a string of 81 digits ("0" or "." = blank).
    Accuracy = exactly solved puzzles."""

    family = "sudoku"
    default_instruction = '" [STRUCT:src] "  .  solve the sudoku .  -> [TEXT:tgt]'
    default_metric = "accuracy"
    default_generation = GenerationConfig(beam=1, max_len_b=200, no_repeat_ngram_size=0)  # digits repeat by design

    def prepare_row(self, row: dict, base_dir: Optional[str]) -> dict:
        prepared = dict(row)
        for column in ("src", "tgt"):
            if row.get(column) is not None:
                prepared[column] = linearise_table(read_grid(row[column], column))
        return prepared


def read_grid(value: Any, column: str) -> list[list[int]]:
    """Any of GRID_FORMS -> 9 rows of 9 ints in 0..9; a ValueError naming the column otherwise."""
    if isinstance(value, str):
        text = value.strip()
        if CELL_SEPARATOR.strip() in text:
            value = [row.split(CELL_SEPARATOR.strip()) for row in text.split(ROW_SEPARATOR.strip())]
        else:
            compact = "".join(text.split())
            if len(compact) != SIZE * SIZE:
                raise ValueError(f"column {column!r}: a sudoku string needs {SIZE * SIZE} digits, got {len(compact)}; "
                                 f"expected {GRID_FORMS}")
            value = [compact[start:start + SIZE] for start in range(0, SIZE * SIZE, SIZE)]
    if not isinstance(value, (list, tuple)) or len(value) != SIZE:
        raise ValueError(f"column {column!r}: expected {GRID_FORMS}; got {value!r:.100}")
    return [[_digit(cell, column, r, c) for c, cell in enumerate(_cells(row, column, r))]
            for r, row in enumerate(value)]


def _cells(row: Any, column: str, r: int) -> list:
    cells = list(row) if isinstance(row, (list, tuple, str)) else None
    if cells is None or len(cells) != SIZE:
        raise ValueError(f"column {column!r}: sudoku row {r} must have {SIZE} cells, got {row!r:.60}")
    return cells


def _digit(cell: Any, column: str, r: int, c: int) -> int:
    text = str(cell).strip()
    if text == ".":
        return 0
    if text.isdigit() and len(text) == 1:
        return int(text)
    raise ValueError(f"column {column!r}: sudoku cell ({r}, {c}) is {cell!r}; expected a digit 0-9 (0 or '.' = blank)")
