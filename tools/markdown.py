"""Markdown table cells for the generated docs."""
from __future__ import annotations


def escape(text: str) -> str:
    """`text` safe inside a table cell: pipes and tag-like `<` escaped."""
    return text.replace("|", "\\|").replace("<", "\\<")


def cell(text: object) -> str:
    """`text` as one escaped table cell line (whitespace runs, newlines included, become one space)."""
    return escape(" ".join(str(text).split()))
