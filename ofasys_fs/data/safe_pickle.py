"""Reading benchmark files that are pickles (RefCOCO's refs(unc).p) without running code from them.

A pickle can name any importable callable (`os.system`, `subprocess.Popen`, ...) and unpickling calls it.
Plain data needs no callable at all: dicts, lists, tuples, strings, numbers, booleans and None have opcodes
of their own. `SafeUnpickler` therefore refuses every global except the two built-in set types, before
anything is called. Python 2 pickles store text as byte strings; `encoding="latin1"` (the default here)
turns them into `str` as Python 3's own `pickle` documentation recommends for such files.
"""
from __future__ import annotations

import io
import os
import pickle
from typing import IO, Any, Union

# (module, name) pairs a data-only pickle may reference; Python 2 calls the builtins module __builtin__.
ALLOWED_GLOBALS = frozenset((module, name) for module in ("builtins", "__builtin__") for name in ("set", "frozenset"))


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for something other than plain data; nothing from it was called."""


class SafeUnpickler(pickle.Unpickler):
    """An Unpickler that builds plain data only: any global outside ALLOWED_GLOBALS and any persistent id
    is refused with UnsafePickleError naming the file and what the pickle asked for."""

    def __init__(self, file: IO[bytes], *, source: str = "pickle", encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self.source}: the pickle asks for {module}.{name}; only plain data (dict, list, tuple, str, "
            f"int, float, bool, None, set) is accepted, so it was not loaded (nothing from it was run)")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: the pickle refers to an external object ({pid!r:.60}); only plain "
                                f"data is accepted, so it was not loaded")


def safe_load(source: Union[str, os.PathLike, bytes, IO[bytes]], *, encoding: str = "latin1") -> Any:
    """Unpickle plain data from a path, bytes or a binary file object; UnsafePickleError for anything else,
    pickle.UnpicklingError (naming the file) for a damaged pickle."""
    if isinstance(source, (bytes, bytearray)):
        return _load(io.BytesIO(source), "pickle bytes", encoding)
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            return _load(handle, os.fspath(source), encoding)
    return _load(source, getattr(source, "name", "pickle stream"), encoding)


def _load(handle: IO[bytes], where: str, encoding: str) -> Any:
    try:
        return SafeUnpickler(handle, source=where, encoding=encoding).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, IndexError, KeyError, TypeError) as err:
        raise pickle.UnpicklingError(f"{where}: not a readable pickle of plain data ({type(err).__name__}: "
                                     f"{err})") from None
