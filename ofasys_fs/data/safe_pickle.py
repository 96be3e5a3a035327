"""Reading pickles from elsewhere without running code from them: benchmark files (RefCOCO's refs(unc).p) and
fairseq checkpoints (OFA's released .pt files).

A pickle can name any importable callable (`os.system`, `subprocess.Popen`, ...) and unpickling calls it.
Plain data needs no callable at all: dicts, lists, tuples, strings, numbers, booleans and None have opcodes
of their own. `SafeUnpickler` therefore refuses every global except the two built-in set types, before
anything is called. Python 2 pickles store text as byte strings; `encoding="latin1"` (the default here)
turns them into `str` as Python 3's own `pickle` documentation recommends for such files.

`load_fairseq_checkpoint` reads a torch.save file that also holds the objects fairseq stores beside the
weights (argparse.Namespace, omegaconf containers, numpy scalars and arrays): tensors are rebuilt by torch's own
data functions, numpy values by numpy's constructors, and Namespace / omegaconf objects become stand-ins that
only record their state (omegaconf is never imported); `plain` turns the result into dicts and lists. Every other
global is refused before anything is called.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import types
from typing import IO, Any, Union

import numpy as np
import torch

try:  # numpy 2 (numpy.core is a deprecated alias there)
    from numpy._core import multiarray as numpy_multiarray
except ImportError:  # numpy 1
    from numpy.core import multiarray as numpy_multiarray

# (module, name) pairs a data-only pickle may reference; Python 2 calls the builtins module __builtin__.
ALLOWED_GLOBALS = frozenset((module, name) for module in ("builtins", "__builtin__") for name in ("set", "frozenset"))


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for something other than plain data; nothing from it was called."""


def refusal(source: str, module: str, name: str, accepted: str) -> UnsafePickleError:
    return UnsafePickleError(f"{source}: the pickle asks for {module}.{name}; only {accepted} is accepted, so it "
                             f"was not loaded (nothing from it was run)")


class SafeUnpickler(pickle.Unpickler):
    """An Unpickler that builds plain data only: any global outside ALLOWED_GLOBALS and any persistent id
    is refused with UnsafePickleError naming the file and what the pickle asked for."""

    def __init__(self, file: IO[bytes], *, source: str = "pickle", encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise refusal(self.source, module, name, "plain data (dict, list, tuple, str, int, float, bool, None, set)")

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


# ---- fairseq checkpoints ------------------------------------------------------------------------------------


class StandIn:
    """An object of an allowed class of a checkpoint pickle, recorded instead of built: the constructor
    arguments and the state the pickle gives it; `plain` turns it into plain data."""

    def __init__(self, *args: Any):
        self.args, self.state = args, None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class NamespaceStandIn(StandIn):
    """argparse.Namespace: its attributes are the state."""


class ContainerStandIn(StandIn):
    """omegaconf DictConfig / ListConfig: the content is the state's `_content`."""


class NodeStandIn(StandIn):
    """omegaconf value nodes (AnyNode, StringNode, ...): the value is the state's `_val`."""


class MetadataStandIn(StandIn):
    """omegaconf metadata and typing markers: no data of their own."""


def latin1_bytes(text: str, encoding: str) -> bytes:
    """What protocol-2 pickles write for a bytes value (`_codecs.encode(text, "latin1")`); other codecs refused."""
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"the pickle asks for bytes through the {encoding!r} codec; only latin1 is accepted")
    return text.encode("latin1")


# value types (omegaconf records them as element and object types); Python 2's `long` is int
BUILTIN_TYPES = {"dict": dict, "list": list, "tuple": tuple, "set": set, "frozenset": frozenset, "int": int,
                 "long": int, "float": float, "str": str, "bool": bool, "bytes": bytes}
OMEGACONF_NODES = ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "BytesNode", "PathNode")
NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
CHECKPOINT_GLOBALS: dict[tuple[str, str], Any] = {
    **{(module, name): kind for module in ("builtins", "__builtin__") for name, kind in BUILTIN_TYPES.items()},
    ("_codecs", "encode"): latin1_bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
    ("torch", "Tensor"): torch.Tensor,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch", "Size"): torch.Size,
    ("argparse", "Namespace"): NamespaceStandIn,
    ("omegaconf.dictconfig", "DictConfig"): ContainerStandIn,
    ("omegaconf.listconfig", "ListConfig"): ContainerStandIn,
    **{("omegaconf.nodes", node): NodeStandIn for node in OMEGACONF_NODES},
    ("omegaconf.base", "Metadata"): MetadataStandIn,
    ("omegaconf.base", "ContainerMetadata"): MetadataStandIn,
    ("typing", "Any"): MetadataStandIn,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    **{(module, "scalar"): numpy_multiarray.scalar for module in NUMPY_MODULES},
    **{(module, "_reconstruct"): numpy_multiarray._reconstruct for module in NUMPY_MODULES},
}
CHECKPOINT_ACCEPTS = ("tensors, plain data, argparse.Namespace, omegaconf containers and numpy scalars and arrays "
                      "(what fairseq checkpoints hold)")


class CheckpointUnpickler(pickle.Unpickler):
    """The unpickler torch.load runs on a fairseq checkpoint here: CHECKPOINT_GLOBALS only (torch resolves the
    storage types and persistent ids itself). No persistent_load method of its own, so that torch's applies."""

    source = "checkpoint"

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in CHECKPOINT_GLOBALS:
            return CHECKPOINT_GLOBALS[(module, name)]
        raise refusal(self.source, module, name, CHECKPOINT_ACCEPTS)


def load_fairseq_checkpoint(path: Union[str, os.PathLike]) -> Any:
    """torch.load a fairseq checkpoint (zip or legacy format) on CPU through CheckpointUnpickler; UnsafePickleError
    for anything that is not data. The result may hold stand-ins: pass it through `plain`."""
    source = os.fspath(path)
    unpickler = type("CheckpointUnpickler", (CheckpointUnpickler,), {"source": source})
    module = types.SimpleNamespace(__name__=__name__, Unpickler=unpickler,
                                   load=lambda handle, **options: unpickler(handle, **options).load())
    return torch.load(source, map_location="cpu", pickle_module=module, weights_only=False)


def plain(value: Any) -> Any:
    """A loaded checkpoint value with the stand-ins replaced by plain data: a Namespace or DictConfig by a dict,
    a ListConfig by a list, a node by its value, metadata by None; numpy scalars become Python numbers."""
    if isinstance(value, NamespaceStandIn):
        return plain(value.state or {})
    if isinstance(value, ContainerStandIn):
        return plain((value.state or {}).get("_content"))
    if isinstance(value, NodeStandIn):
        return plain((value.state or {}).get("_val"))
    if isinstance(value, MetadataStandIn):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value)
    return value
