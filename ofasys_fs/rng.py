"""Stateless randomness: every random choice derives from hash(seed, task, epoch, row, purpose).

Results then depend neither on the number of DataLoader workers nor on the order rows are visited,
and a resumed run redraws exactly what the uninterrupted run drew.
"""
from __future__ import annotations

import hashlib

import numpy as np


def stable_hash(*parts) -> int:
    """A 64-bit hash of the parts that is identical across processes and Python runs."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def rng_for(seed: int, task: str, epoch: int, row_index: int, purpose: str = "") -> np.random.Generator:
    """The generator for one (seed, task, epoch, row) and one purpose (e.g. a column's masking)."""
    return np.random.Generator(np.random.PCG64(stable_hash(seed, task, epoch, row_index, purpose)))


def check_seed(value: int) -> None:
    """Check a seed that every random generator takes (torch's takes at most 64 bits)."""
    if not 0 <= value < 2**63:
        raise ValueError("must be in [0, 2**63)")
