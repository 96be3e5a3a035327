"""The text a tokenizer is trained on when preprocessing with --train-tokenizer: every string of the text
columns (by default the string columns that are not media) over all readable rows."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .rows import RowSource


def default_text_columns(samples: list[dict], media_columns: set[str]) -> list[str]:
    """Columns whose sampled values are strings and that do not hold media: the tokenizer's corpus."""
    names = dict.fromkeys(name for row in samples for name, value in row.items()
                          if isinstance(value, str) and name not in media_columns)
    return list(names)


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
