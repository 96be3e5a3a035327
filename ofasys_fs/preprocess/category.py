"""CATEGORY slots: one label string -> its BPE ids; with `closed_set` the RowEncoder restricts the
target to the task's answers (a trie over their ids)."""
from __future__ import annotations

from typing import Any, Optional

from ..contracts import SampleContext
from ..registry import register_preprocessor
from .text import TextLikePreprocessor, as_text


@register_preprocessor("category")
class CategoryPreprocessor(TextLikePreprocessor):
    """CATEGORY slot: a label (string, or an integer class written in decimal) -> BPE ids; decodes to the label."""

    modality = "CATEGORY"

    def text_of(self, value: Any, ctx: Optional[SampleContext]) -> str:
        return as_text(value, f"{self.what} (one label)")
