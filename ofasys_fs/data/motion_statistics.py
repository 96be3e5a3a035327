"""Motion normalisation statistics: the per-feature mean and std of the motion_6d windows of the tasks' MOTION
training rows, with their skeleton (docs/design.md §7, "Motion statistics"). Training computes them once and
stores them in the DataConfig of its checkpoints, so that inference normalises inputs and denormalises generated
motion exactly as training did, and knows the skeleton to write generated motion on.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from ..errors import DataError
from ..instruction import column_value
from ..motion.clip import Motion
from ..motion.errors import MotionError
from ..motion.loading import load_motion
from ..motion.statistics import MotionStatistics
from ..preprocess.config import DataConfig

MAX_ROWS = 500  # per motion column: evenly spaced training rows, as for the audio statistics


def motion_slots(task: Any) -> dict[str, Any]:
    """Column -> the first motion_6d slot reading it, over the encoder and decoder of every template."""
    slots: dict[str, Any] = {}
    for template in task.templates:
        for slot in (*template.encoder, *template.decoder):
            if slot.modality == "MOTION" and slot.preprocess == "motion_6d":
                slots.setdefault(slot.name, slot)
    return slots


def training_windows(tasks: Iterable[Any], data_cfg: DataConfig, max_rows: int = MAX_ROWS) -> Iterator[Motion]:
    """The windows the statistics are fitted on: per MOTION column of each task, up to max_rows evenly spaced
    training rows, each cut into windows of the slot's max_length (half a window apart; a shorter clip or no
    max_length: the whole clip) at the slot's rate. The first skeleton seen is the one every clip must use."""
    skeleton = None
    for task in tasks:
        rows = task.datasets.get("train")
        for column, slot in motion_slots(task).items() if rows is not None else ():
            fps = float(slot.attrs.get("fps") or data_cfg.motion_fps)
            window = slot.attrs.get("max_length")
            for index in np.linspace(0, len(rows) - 1, min(max_rows, len(rows))).round().astype(int):
                value = column_value(rows[int(index)], column)
                if value is None:
                    continue
                try:
                    motion = load_motion(value, rows.base_dir, skeleton=skeleton, array_fps=fps)
                    if skeleton is None:
                        skeleton = motion.skeleton
                    skeleton.check_matches(motion.skeleton, motion.source, "the skeleton of the first training clip")
                except MotionError as err:
                    raise DataError(f"task {task.name!r}, train row {int(index)}, column {column!r}: {err}; one "
                                    f"model normalises and generates motion on one skeleton") from err
                motion = motion.resampled(fps)
                if window is None or motion.num_frames < window:
                    yield motion
                else:
                    yield from motion.windows(window, max(1, window // 2))


def motion_statistics(tasks: Iterable[Any], data_cfg: DataConfig, max_rows: int = MAX_ROWS) -> Optional[dict]:
    """MotionStatistics.to_dict() of the tasks' MOTION training windows; None when no task has MOTION rows."""
    windows = list(training_windows(tasks, data_cfg, max_rows))
    return MotionStatistics.fit(windows).to_dict() if windows else None


def with_motion_statistics(data_cfg: DataConfig, tasks: Iterable[Any]) -> DataConfig:
    """`data_cfg` with the tasks' motion statistics (unchanged when no task reads motion)."""
    statistics = motion_statistics(tasks, data_cfg)
    if statistics is None:
        return data_cfg
    return dataclasses.replace(data_cfg, motion_statistics=statistics)
