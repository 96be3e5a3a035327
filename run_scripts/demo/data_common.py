"""What every demo data builder shares: split sizes, seeded randomness, and writing a split as jsonl."""
from __future__ import annotations

import dataclasses
import json
import zlib
from pathlib import Path

import numpy as np

SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class SplitSizes:
    """Rows per split of one task; `valid` feeds the training curves, `test` the final table."""

    train: int
    valid: int
    test: int

    def of(self, split: str) -> int:
        return getattr(self, split)

    def scaled(self, factor: float, minimum: int = 8) -> "SplitSizes":
        return SplitSizes(*(max(minimum, int(self.of(split) * factor)) for split in SPLITS))


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator that depends only on the seed and the names (a task's split, a stage), never on call order."""
    return np.random.default_rng([seed, *(zlib.crc32(name.encode()) for name in names)])


def write_split(folder: Path, split: str, rows: list[dict]) -> Path:
    """Write `rows` as <folder>/<split>.jsonl (media columns hold paths relative to the folder)."""
    if not rows:
        raise ValueError(f"{folder}: the {split} split has no rows; the data builder produced none")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_split(folder: Path, split: str) -> list[dict]:
    with open(folder / f"{split}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def take_disjoint(count: int, sizes: SplitSizes, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Disjoint random index sets per split out of range(count); an error when the source is too small."""
    needed = sizes.train + sizes.valid + sizes.test
    if needed > count:
        raise ValueError(f"the source has {count} items, the splits need {needed} ({sizes})")
    order = rng.permutation(count)
    ends = np.cumsum([sizes.of(split) for split in SPLITS])
    return {split: order[end - sizes.of(split):end] for split, end in zip(SPLITS, ends)}
