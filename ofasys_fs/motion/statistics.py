"""Normalisation of motion_6d features: a per-feature mean and standard deviation with the skeleton they belong
to. `fit` computes them from a training split; `for_skeleton` is the data-free default (lengths in units of the
skeleton's rest height, rotations as they are). `to_dict` is what a task stores (plain lists and the BVH header)."""
from __future__ import annotations

import dataclasses
from typing import Iterable

import numpy as np

from .bvh import parse_hierarchy
from .clip import Motion
from .errors import MotionError
from .features import ROOT_FEATURES, feature_dim, to_6d
from .rotations import matrix_to_6d
from .skeleton import Skeleton

MIN_STD = 1e-6  # a feature that never varies (a joint the capture never rotates) is only centred


def window_features(window: Motion) -> np.ndarray:
    """The features a model sees for a window: motion_6d of the window anchored at its first frame, so that it
    starts above the origin facing +Z wherever and however it was captured."""
    return to_6d(window.anchored(0))


@dataclasses.dataclass
class MotionStatistics:
    skeleton: Skeleton
    mean: np.ndarray  # [D]
    std: np.ndarray  # [D], at least MIN_STD
    count: int = 0  # frames they were computed from (0: the data-free default)

    @classmethod
    def for_skeleton(cls, skeleton: Skeleton) -> "MotionStatistics":
        """Rotations centred on the rest pose (an unrotated joint gives zeros), lengths in rest heights."""
        mean = np.concatenate([np.zeros(ROOT_FEATURES), np.tile(matrix_to_6d(np.eye(3)), skeleton.num_joints)])
        std = np.ones(feature_dim(skeleton))
        std[:ROOT_FEATURES] = skeleton.rest_height
        return cls(skeleton, mean, std)

    @classmethod
    def fit(cls, windows: Iterable[Motion]) -> "MotionStatistics":
        """Mean and std over every frame of the windows' features; all windows must share one skeleton."""
        features, skeleton = [], None
        for window in windows:
            if skeleton is None:
                skeleton = window.skeleton
            skeleton.check_matches(window.skeleton, window.source, "the first window's skeleton")
            features.append(window_features(window))
        if skeleton is None:
            raise MotionError("motion statistics", "no window to compute them from; give the training split's clips")
        stacked = np.concatenate(features)
        return cls(skeleton, stacked.mean(0), np.maximum(stacked.std(0), MIN_STD), len(stacked))

    def check(self, motion: Motion) -> None:
        """MotionError unless `motion` uses the skeleton these statistics were computed on."""
        self.skeleton.check_matches(motion.skeleton, motion.source)

    def normalise(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) / self.std

    def denormalise(self, features: np.ndarray) -> np.ndarray:
        return features * self.std + self.mean

    def to_dict(self) -> dict:
        return {"hierarchy": self.skeleton.header(), "mean": self.mean.tolist(), "std": self.std.tolist(),
                "count": self.count}

    @classmethod
    def from_dict(cls, stored: dict) -> "MotionStatistics":
        skeleton = parse_hierarchy(stored["hierarchy"], "stored motion statistics")
        mean, std = np.asarray(stored["mean"], dtype=np.float64), np.asarray(stored["std"], dtype=np.float64)
        if mean.shape != (feature_dim(skeleton),) or std.shape != mean.shape or not (std > 0).all():
            raise MotionError("stored motion statistics", f"mean {list(mean.shape)} and std {list(std.shape)} must be "
                                                          f"[{feature_dim(skeleton)}] with a positive std")
        return cls(skeleton, mean, std, int(stored.get("count", 0)))
