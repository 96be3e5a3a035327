"""Global CMVN statistics: the per-bin fbank mean and std of the tasks' AUDIO training rows (docs/design.md,
"Audio CMVN"). Training computes them once and stores them in the DataConfig of its checkpoints, so that
inference normalises exactly as training did.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Optional

import numpy as np

from ..errors import DataError
from ..instruction import column_value
from ..media import MediaError
from ..preprocess.audio import fbank_features, uses_utterance_cmvn
from ..preprocess.config import BinStatistics, DataConfig

MAX_ROWS = 500  # per audio column: evenly spaced training rows; the statistics settle long before
MIN_STD = 1e-5


def global_cmvn_columns(task: Any) -> list[str]:
    """The encoder AUDIO columns of a task's templates that the `audio` preprocessor normalises globally."""
    return sorted({slot.name for template in task.templates for slot in template.encoder
                   if slot.modality == "AUDIO" and slot.preprocess == "audio" and not uses_utterance_cmvn(slot)})


def audio_statistics(tasks: Iterable[Any], data_cfg: DataConfig, max_rows: int = MAX_ROWS) -> Optional[BinStatistics]:
    """(mean, std) per fbank bin over up to max_rows training rows of every globally normalised AUDIO column,
    weighted by frames; None when no task has one. Rows without the column's value are skipped."""
    total = squares = None
    frames = 0
    for task in tasks:
        rows = task.datasets.get("train")
        for column in global_cmvn_columns(task) if rows is not None else ():
            for index in np.linspace(0, len(rows) - 1, min(max_rows, len(rows))).round().astype(int):
                value = column_value(rows[int(index)], column)
                if value is None:
                    continue
                try:
                    features = fbank_features(value, rows.base_dir, data_cfg.sample_rate).double()
                except (MediaError, ValueError) as err:
                    raise DataError(f"task {task.name!r}, train row {int(index)}, column {column!r}: {err}") from err
                total = features.sum(0) if total is None else total + features.sum(0)
                squares = features.pow(2).sum(0) if squares is None else squares + features.pow(2).sum(0)
                frames += features.size(0)
    if not frames:
        return None
    mean = total / frames
    std = (squares / frames - mean.pow(2)).clamp_min(0).sqrt().clamp_min(MIN_STD)
    return tuple(mean.tolist()), tuple(std.tolist())


def with_audio_statistics(data_cfg: DataConfig, tasks: Iterable[Any]) -> DataConfig:
    """`data_cfg` with the tasks' global CMVN statistics (unchanged when no task normalises audio globally)."""
    statistics = audio_statistics(tasks, data_cfg)
    if statistics is None:
        return data_cfg
    return dataclasses.replace(data_cfg, audio_cmvn=statistics)

