"""Preprocessors whose names instructions already accept but whose implementations come in later issues.

Registering them gives a clear error when a dataset is built with them, instead of "unknown preprocessor".
"""
from __future__ import annotations

from typing import Any

from ..contracts import Preprocessor, SampleContext
from ..registry import register_preprocessor


def _not_available_yet(name: str, role: str, aliases: tuple = ()) -> type:
    """Register a preprocessor `name` that refuses to be built, saying it is planned but not implemented."""
    message = (f"preprocessor {name!r} ({role}) is not available yet in ofasys_fs: it is planned for a later "
               f"version; instructions using it parse, but no dataset can be preprocessed with it")

    class NotAvailableYet(Preprocessor):
        modality = role.split()[0]

        def __init__(self, slot: Any, vocab: Any, data_cfg: Any = None):
            raise ValueError(message)

        def __call__(self, value: Any, ctx: SampleContext):
            raise ValueError(message)

    NotAvailableYet.__name__ = NotAvailableYet.__qualname__ = f"NotAvailableYet_{name}"
    return register_preprocessor(name, aliases=aliases)(NotAvailableYet)


_not_available_yet("image_code", "IMAGE output", aliases=("image_vqgan",))
