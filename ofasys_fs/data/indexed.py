"""fairseq-compatible MMapIndexedDataset files ("MMIDIDX" v1): a bounds-checked reader and a writer.

A dataset `prefix` is two files. `prefix.idx`: magic b"MMIDIDX\\x00\\x00", <Q version 1, <B dtype code,
<Q item count N, then int32 sizes[N] (elements per item) and int64 pointers[N] (byte offsets into
`.bin`). `prefix.bin`: the items' raw elements, concatenated. The reader also accepts Megatron-LM's
variant, which adds <Q doc count D after N and int64 doc_idx[D] after the pointers (ignored here).
"""
from __future__ import annotations

import array
import os
import struct
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import DataError

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
_HEADER = struct.Struct("<9sQBQ")  # magic, version, dtype code, item count
_DOC_COUNT = struct.Struct("<Q")

# fairseq's codes. fairseq maps both 6 and 7 to float64 (np.float/np.double; 7 is float32 only in
# Megatron-core), so float64 is written as 6 and float32 has no unambiguous code: it is refused.
CODE_TO_DTYPE: dict[int, np.dtype] = {
    1: np.dtype(np.uint8), 2: np.dtype(np.int8), 3: np.dtype(np.int16), 4: np.dtype(np.int32),
    5: np.dtype(np.int64), 6: np.dtype(np.float64), 7: np.dtype(np.float64), 8: np.dtype(np.uint16),
    9: np.dtype(np.uint32), 10: np.dtype(np.uint64),
}
DTYPE_TO_CODE: dict[np.dtype, int] = {}
for _code, _dtype in CODE_TO_DTYPE.items():
    DTYPE_TO_CODE.setdefault(_dtype, _code)

PathLike = Union[str, "os.PathLike[str]"]
Item = Union[np.ndarray, bytes, bytearray, memoryview, list, tuple]


class ShardError(DataError):
    """A shard or indexed-dataset file is missing, corrupt or inconsistent; the message names the file."""


def index_file(prefix: PathLike) -> str:
    return os.fspath(prefix) + ".idx"


def data_file(prefix: PathLike) -> str:
    return os.fspath(prefix) + ".bin"


def dtype_code(dtype: Any) -> int:
    """The MMIDIDX header code of `dtype`; ShardError when fairseq has no (unambiguous) code for it."""
    dtype = np.dtype(dtype)
    if dtype not in DTYPE_TO_CODE:
        hint = " (fairseq reads code 7 as float64; cast to float64)" if dtype == np.float32 else ""
        supported = ", ".join(sorted({d.name for d in CODE_TO_DTYPE.values()}))
        raise ShardError(f"dtype {dtype.name} has no MMIDIDX code{hint}; supported: {supported}")
    return DTYPE_TO_CODE[dtype]


def checked_position(index: int, length: int, item: str) -> int:
    """`index` as a position in 0..length-1, a negative one counting from the end; else an IndexError that names
    the `item` ("<file>: item")."""
    position = int(index)
    if position < 0:
        position += length
    if not 0 <= position < length:
        raise IndexError(f"{item} {index} out of range (0..{length - 1})")
    return position


def fsync_dir(path: PathLike) -> None:
    """Make renames inside folder `path` durable."""
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class IndexedWriter:
    """Appends items to `prefix.bin/.idx` under temporary names; `finalize` renames them into place."""

    TEMP_SUFFIX = ".partial"

    def __init__(self, prefix: PathLike, dtype: Any = np.uint8):
        self.prefix = os.fspath(prefix)
        self.dtype = np.dtype(dtype)
        self._code = dtype_code(self.dtype)
        self._sizes = array.array("i")
        assert self._sizes.itemsize == 4, "the int32 sizes array needs a 4-byte C int"
        self._bin = open(data_file(self.prefix) + self.TEMP_SUFFIX, "wb")
        self._done = False

    def __len__(self) -> int:
        return len(self._sizes)

    def add(self, item: Item) -> None:
        """Append one item: raw bytes (reinterpreted as `dtype`) or an array/sequence, stored flattened."""
        if self._done:
            raise ShardError(f"{self.prefix}: add() after finalize() or abort()")
        elements = self._as_elements(item)
        if elements.size >= 2**31:
            raise ShardError(f"{self.prefix}: item {len(self)} has {elements.size} elements; the int32 "
                             f"sizes array of MMIDIDX holds at most {2**31 - 1}")
        self._bin.write(elements.tobytes())
        self._sizes.append(elements.size)

    def _as_elements(self, item: Item) -> np.ndarray:
        if isinstance(item, (bytes, bytearray, memoryview)):
            raw = memoryview(item).cast("B")
            if raw.nbytes % self.dtype.itemsize:
                raise ShardError(f"{self.prefix}: item {len(self)} has {raw.nbytes} bytes, not a multiple "
                                 f"of the {self.dtype.name} element size {self.dtype.itemsize}")
            return np.frombuffer(raw, dtype=self.dtype)
        values = np.asarray(item).reshape(-1)
        if np.can_cast(values.dtype, self.dtype, "safe"):
            return values.astype(self.dtype, copy=False)
        try:
            cast = values.astype(self.dtype)
            lossless = np.array_equal(cast.astype(values.dtype), values)
        except (TypeError, ValueError):
            lossless = False
        if not lossless:
            raise ShardError(f"{self.prefix}: item {len(self)} ({values.dtype.name} values) does not fit "
                             f"{self.dtype.name} without loss")
        return cast

    def finalize(self) -> None:
        """Write the index, fsync both files and rename them to their final names."""
        if self._done:
            raise ShardError(f"{self.prefix}: finalize() called twice or after abort()")
        self._done = True
        self._bin.flush()
        os.fsync(self._bin.fileno())
        self._bin.close()
        sizes = np.frombuffer(self._sizes, dtype=np.int32)
        pointers = np.zeros(len(sizes), dtype=np.int64)
        np.cumsum(sizes[:-1].astype(np.int64) * self.dtype.itemsize, out=pointers[1:])
        idx_temp = index_file(self.prefix) + self.TEMP_SUFFIX
        with open(idx_temp, "wb") as f:
            f.write(_HEADER.pack(MAGIC, VERSION, self._code, len(sizes)))
            f.write(sizes.tobytes())
            f.write(pointers.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(data_file(self.prefix) + self.TEMP_SUFFIX, data_file(self.prefix))
        os.replace(idx_temp, index_file(self.prefix))
        fsync_dir(os.path.dirname(os.path.abspath(self.prefix)))

    def abort(self) -> None:
        """Discard everything written (the temporary files); the final names are never touched."""
        if self._done:
            return
        self._done = True
        self._bin.close()
        for path in (data_file(self.prefix), index_file(self.prefix)):
            if os.path.exists(path + self.TEMP_SUFFIX):
                os.remove(path + self.TEMP_SUFFIX)


class IndexedDataset:
    """Read-only MMIDIDX v1 dataset over numpy memmaps; every pointer is checked against the `.bin` size.

    Pickles as its prefix only (memmaps are reopened lazily), so it is cheap to send to DataLoader workers.
    """

    def __init__(self, prefix: PathLike):
        self.prefix = os.fspath(prefix)
        self._arrays: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None
        self._open()

    def __getstate__(self) -> dict:
        return {"prefix": self.prefix, "dtype": self.dtype, "length": self._length}

    def __setstate__(self, state: dict) -> None:
        self.prefix, self.dtype, self._length = state["prefix"], state["dtype"], state["length"]
        self._arrays = None

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> np.ndarray:
        """Item `index` as a read-only 1-D array of `dtype` (a view into the `.bin` memmap)."""
        sizes, pointers, data = self._open()
        index = self._check_index(index)
        return np.frombuffer(data, dtype=self.dtype, count=int(sizes[index]), offset=int(pointers[index]))

    def item_bytes(self, index: int) -> bytes:
        """Item `index`'s raw bytes, copied out of the memmap."""
        sizes, pointers, data = self._open()
        index = self._check_index(index)
        start = int(pointers[index])
        return data[start:start + int(sizes[index]) * self.dtype.itemsize].tobytes()

    @property
    def sizes(self) -> np.ndarray:
        """Elements per item (int32), fairseq's `sizes`."""
        return self._open()[0]

    def _check_index(self, index: int) -> int:
        return checked_position(index, self._length, f"{self.prefix}: item")

    def _open(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = self._read_and_validate()
        return self._arrays

    def _read_and_validate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx_path, bin_path = index_file(self.prefix), data_file(self.prefix)
        for path in (idx_path, bin_path):
            if not os.path.isfile(path):
                raise ShardError(f"{path}: missing (an MMIDIDX dataset needs both {Path(idx_path).name} "
                                 f"and {Path(bin_path).name})")
        idx_size = os.path.getsize(idx_path)
        with open(idx_path, "rb") as f:
            head = f.read(_HEADER.size + _DOC_COUNT.size)
        if not head.startswith(MAGIC) and not MAGIC.startswith(head):
            raise ShardError(f"{idx_path}: wrong magic {head[:len(MAGIC)]!r}, expected {MAGIC!r} "
                             f"(not an MMIDIDX index, or a different fairseq --dataset-impl)")
        if len(head) < _HEADER.size:
            raise ShardError(f"{idx_path}: truncated header ({idx_size} bytes, expected at least {_HEADER.size})")
        _, version, code, length = _HEADER.unpack_from(head)
        if version != VERSION:
            raise ShardError(f"{idx_path}: bad version {version}, expected {VERSION}")
        if code not in CODE_TO_DTYPE:
            raise ShardError(f"{idx_path}: unknown dtype code {code}, expected one of {sorted(CODE_TO_DTYPE)}")
        arrays_offset = _HEADER.size + self._doc_index_header_size(idx_path, idx_size, head, length)
        self.dtype, self._length = CODE_TO_DTYPE[code], length
        index = np.memmap(idx_path, dtype=np.uint8, mode="r")
        sizes = np.frombuffer(index, dtype=np.int32, count=length, offset=arrays_offset)
        pointers = np.frombuffer(index, dtype=np.int64, count=length, offset=arrays_offset + 4 * length)
        bin_size = os.path.getsize(bin_path)
        data = np.memmap(bin_path, dtype=np.uint8, mode="r") if bin_size else np.zeros(0, dtype=np.uint8)
        self._validate_pointers(sizes, pointers, bin_size, bin_path)
        return sizes, pointers, data

    @staticmethod
    def _doc_index_header_size(idx_path: str, idx_size: int, head: bytes, length: int) -> int:
        """0 for fairseq's layout, 8 for Megatron's (doc count + doc_idx); ShardError when neither fits."""
        fairseq_size = _HEADER.size + 12 * length
        if idx_size == fairseq_size:
            return 0
        if idx_size > fairseq_size and len(head) == _HEADER.size + _DOC_COUNT.size:
            (docs,) = _DOC_COUNT.unpack_from(head, _HEADER.size)
            if idx_size == fairseq_size + _DOC_COUNT.size + 8 * docs:
                return _DOC_COUNT.size
        state = "truncated" if idx_size < fairseq_size else "has trailing bytes"
        raise ShardError(f"{idx_path}: {state}: {idx_size} bytes, but {length} items need {fairseq_size} "
                         f"(header {_HEADER.size} + 12 per item)")

    def _validate_pointers(self, sizes: np.ndarray, pointers: np.ndarray, bin_size: int, bin_path: str) -> None:
        idx_path = index_file(self.prefix)
        if len(sizes) and sizes.min() < 0:
            bad = int(np.flatnonzero(sizes < 0)[0])
            raise ShardError(f"{idx_path}: item {bad} has negative size {int(sizes[bad])}")
        out_of_range = (pointers < 0) | (pointers > bin_size)
        if not out_of_range.any():
            out_of_range = pointers + sizes.astype(np.int64) * self.dtype.itemsize > bin_size
        if out_of_range.any():
            bad = int(np.flatnonzero(out_of_range)[0])
            raise ShardError(f"{idx_path}: pointer out of range: item {bad} spans bytes {int(pointers[bad])}.."
                             f"{int(pointers[bad]) + int(sizes[bad]) * self.dtype.itemsize} but {bin_path} "
                             f"has {bin_size} bytes (truncated .bin or corrupt index)")
        decreasing = np.flatnonzero(np.diff(pointers) < 0)
        if len(decreasing):
            bad = int(decreasing[0]) + 1
            raise ShardError(f"{idx_path}: pointers not monotonic: item {bad} starts at {int(pointers[bad])}, "
                             f"before item {bad - 1} at {int(pointers[bad - 1])}")
