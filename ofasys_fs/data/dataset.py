"""TaskDataset: one task's split as a map-style torch Dataset keyed by (row_index, epoch).

All randomness of an example (template, masking, augmentation) is a function of the key and the seed,
so results do not depend on worker count or visiting order. Errors name task, split, row location and
column.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Union

import torch.utils.data

from ..contracts import SampleContext
from ..errors import ConfigError, DataError
from .encode import EncodeError, Example, RowEncoder


@dataclasses.dataclass(frozen=True)
class BadRow:
    """A row that could not be read or encoded, kept in its batch's place with the reason (--skip-bad-rows)."""

    index: int
    reason: str


class TaskDataset(torch.utils.data.Dataset):
    """`dataset[(row_index, epoch)] -> Example` (a bare int means epoch 0); `collater` batches Examples.

    With `skip_bad_rows` a row that fails gives a BadRow instead of a DataError, and `collater` leaves it out
    of the batch and lists its reason under `sample["bad_rows"]` (so the trainer can count and report it)."""

    def __init__(self, task: Any, split: str, encoder: RowEncoder, seed: int = 1, skip_bad_rows: bool = False):
        if split not in task.datasets:
            raise ConfigError(f"task {task.name!r} has no {split!r} data (splits added: "
                             f"{sorted(task.datasets) or 'none'}); call task.add_dataset(data, {split!r})")
        self.task, self.split, self.encoder, self.seed = task, split, encoder, seed
        self.skip_bad_rows = skip_bad_rows
        self.rows = task.datasets[split]
        recorded, ours = getattr(self.rows, "tokenizer_hash", None), encoder.vocab.tokenizer_hash
        if recorded is not None and recorded != ours:
            raise DataError(
                f"task {task.name!r}, split {split!r}: {self.rows.description} was preprocessed with tokenizer "
                f"{recorded[:12]}, but the model uses tokenizer {ours[:12]}; run ofasys-preprocess again with the "
                f"model's tokenizer, or train with the tokenizer the shards were made with")
        for column, stored in (getattr(self.rows, "image_codes", None) or {}).items():
            for slot, preprocessor in encoder.preprocessors.items():
                used = getattr(getattr(preprocessor, "tokenizer", None), "content_hash", stored)
                if slot.name == column and used != stored:
                    raise DataError(
                        f"task {task.name!r}, split {split!r}: {self.rows.description} holds the image codes of "
                        f"tokenizer {stored[:20]}... in column {column!r}, but the task encodes images with "
                        f"{used[:20]}...; run ofasys-preprocess --image-codes with the model's image tokenizer, or "
                        f"train with the one the shards were made with")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: Union[int, tuple]) -> Union[Example, BadRow]:
        row_index, epoch = (key, 0) if isinstance(key, int) else key
        if not 0 <= row_index < len(self.rows):
            raise IndexError(f"task {self.task.name!r}, split {self.split!r}: row {row_index} is out of range "
                             f"(0..{len(self.rows) - 1})")
        try:
            return self.example(row_index, epoch)
        except DataError as err:
            if not self.skip_bad_rows:
                raise
            return BadRow(row_index, str(err))

    def example(self, row_index: int, epoch: int) -> Example:
        """The row's Example; a DataError names the task, split, row and column when it cannot be made."""
        context = f"task {self.task.name!r}, split {self.split!r}"
        try:
            row = self.rows[row_index]
        except DataError as err:  # already names the file and row
            raise DataError(f"{context}: {err}") from err
        where = f"{context}, {self.rows.where(row_index)}"
        ctx = SampleContext(split=self.split, task=self.task.name, row_index=row_index, epoch=epoch,
                            seed=self.seed, base_dir=self.rows.base_dir)
        try:
            return self.encoder.encode(row, ctx)
        except EncodeError as err:
            column = f", column {err.column!r}" if err.column else ""
            raise DataError(f"{where}{column}: {err.reason}") from err
        except ValueError as err:
            raise DataError(f"{where}: {err}") from err

    def collater(self, examples: list) -> dict:
        """A list of Examples (and BadRows) -> the batch `sample` dict, with `bad_rows` when some were left out."""
        good = [example for example in examples if not isinstance(example, BadRow)]
        bad = [example.reason for example in examples if isinstance(example, BadRow)]
        if not good:
            raise DataError(f"task {self.task.name!r}, split {self.split!r}: every row of a batch is bad, e.g. "
                            f"{bad[0]}")
        sample = self.encoder.collate(good)
        if bad:
            sample["bad_rows"] = bad
        return sample
