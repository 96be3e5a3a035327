"""What ofasys-preprocess reads: a data file (any RowSource), a Hugging Face dataset saved with `save_to_disk`,
or a media folder described by a metadata file; and the first rows, which decide the column plan."""
from __future__ import annotations

import dataclasses
import os

from ..errors import DataError
from .media_columns import media_kind
from .rows import RowSource, as_row_source

DETECTION_ROWS = 100  # rows looked at to recognise media columns and text columns
METADATA_FILES = ("metadata.jsonl", "metadata.tsv", "metadata.parquet")
FILE_NAME_COLUMN = "file_name"
HF_DATASET_MARKERS = ("state.json", "dataset_dict.json")


class MediaFolderRows(RowSource):
    """A folder of media files described by a metadata file (Hugging Face imagefolder convention): its
    `file_name` column names each file relative to the folder and becomes a column `image`, `audio` or
    `video` (after the first listed file's extension) holding that file."""

    def __init__(self, metadata_path: str):
        self.metadata = as_row_source(metadata_path)
        self.base_dir, self.description = os.path.dirname(os.path.abspath(metadata_path)), metadata_path
        first = self.metadata[0]
        if not isinstance(first.get(FILE_NAME_COLUMN), str):
            raise DataError(f"{self.metadata.where(0)}: a media folder's {os.path.basename(metadata_path)} needs a "
                            f"{FILE_NAME_COLUMN!r} column naming each media file; row keys: {sorted(first)}")
        self.column = media_kind(first[FILE_NAME_COLUMN]) or "media"
        if self.column in first:
            raise DataError(f"{self.metadata.where(0)}: column {self.column!r} clashes with the column made from "
                            f"{FILE_NAME_COLUMN!r}; rename it")

    def __len__(self) -> int:
        return len(self.metadata)

    def where(self, index: int) -> str:
        return self.metadata.where(index)

    def __getitem__(self, index: int) -> dict:
        row = dict(self.metadata[index])
        if FILE_NAME_COLUMN not in row:
            raise DataError(f"{self.where(index)}: no {FILE_NAME_COLUMN!r} column naming the media file")
        return {self.column: row.pop(FILE_NAME_COLUMN), **row}


def open_input(path: str, split: str) -> tuple[RowSource, set[str]]:
    """The rows of `path` and the columns the input itself marks as media (HF media features, media folders)."""
    if not os.path.exists(path):
        raise DataError(f"--input {path}: no such file or folder")
    if os.path.isdir(path):
        if any(os.path.isfile(os.path.join(path, marker)) for marker in HF_DATASET_MARKERS):
            return open_hf_dataset(path, split)
        for folder in (os.path.join(path, split), path):
            metadata = next((os.path.join(folder, name) for name in METADATA_FILES
                             if os.path.isfile(os.path.join(folder, name))), None)
            if metadata is not None:
                rows = MediaFolderRows(metadata)
                return rows, {rows.column}
    return as_row_source(path, split), set()


def open_hf_dataset(path: str, split: str) -> tuple[RowSource, set[str]]:
    """A Hugging Face dataset saved with `save_to_disk`; media features are read undecoded (original bytes)."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"--input {path} is a Hugging Face dataset folder (saved with save_to_disk), and "
                        f"reading it needs the 'datasets' package: pip install datasets") from None
    data = datasets.load_from_disk(path)
    if not hasattr(data, "features"):  # a DatasetDict: one Dataset per split
        if split not in data:
            raise DataError(f"--input {path}: the Hugging Face DatasetDict has no split {split!r}; "
                            f"it has {sorted(data)} (pick one with --split)")
        data = data[split]
    media = set()
    for name, feature in data.features.items():
        if type(feature).__name__ in ("Image", "Audio", "Video") and dataclasses.is_dataclass(feature):
            media.add(name)
            if getattr(feature, "decode", False):
                data = data.cast_column(name, dataclasses.replace(feature, decode=False))
    rows = as_row_source(data, split)
    rows.description = f"{path} (Hugging Face dataset, split {split})"
    return rows, media


def sample_rows(source: RowSource) -> list[dict]:
    """The first readable rows (up to DETECTION_ROWS); unreadable ones are reported in the writing pass."""
    rows = []
    for index in range(min(len(source), DETECTION_ROWS)):
        try:
            rows.append(source[index])
        except (ValueError, OSError):
            continue
    return rows
