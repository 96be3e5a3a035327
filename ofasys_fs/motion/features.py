"""The motion_6d representation (OFASys): per frame the root position (3), the root velocity in the root's
heading frame (3, units per second) and the 6-D rotation of every joint (6 J), so D = 6 + 6 J.

`to_6d` and `from_6d` are exact inverses (to rounding); generated features can instead rebuild the ground
path by integrating the velocities (`integrate_velocity=True`), which keeps feet and root consistent.
"""
from __future__ import annotations

import numpy as np

from .clip import Motion
from .errors import MotionError
from .rotations import heading, matrix_to_6d, sixd_to_matrix, yaw_matrix
from .skeleton import Skeleton

ROOT_FEATURES = 6  # position (3) and heading-frame velocity (3)


def feature_dim(skeleton: Skeleton) -> int:
    return ROOT_FEATURES + 6 * skeleton.num_joints


def to_6d(motion: Motion) -> np.ndarray:
    """Motion -> features [T, 6 + 6 J] (float64). Frame 0's velocity repeats frame 1's (no artificial stop)."""
    positions = motion.root_positions
    velocity = np.zeros_like(positions)
    if motion.num_frames > 1:
        velocity[1:] = np.diff(positions, axis=0) * motion.fps
        velocity[0] = velocity[1]
    turn_back = yaw_matrix(-heading(motion.rotations[:, 0]))
    local_velocity = (turn_back @ velocity[..., None])[..., 0]
    rotations = matrix_to_6d(motion.rotations).reshape(motion.num_frames, -1)
    return np.concatenate([positions, local_velocity, rotations], axis=1)


def from_6d(features: np.ndarray, skeleton: Skeleton, fps: float, integrate_velocity: bool = False,
            source: str = "motion_6d features") -> Motion:
    """Features [T, 6 + 6 J] -> Motion. With integrate_velocity the ground path (X, Z) starts at frame 0's
    position and follows the velocities; the height always comes from the position features."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != feature_dim(skeleton):
        raise MotionError(source, f"features of shape {list(features.shape)}; expected [frames, "
                                  f"{feature_dim(skeleton)}] (6 + 6 x {skeleton.num_joints} joints)")
    if not np.isfinite(features).all():
        frame = int(np.argwhere(~np.isfinite(features))[0, 0])
        raise MotionError(f"{source}, frame {frame}", "holds a non-finite value; expected finite features")
    frames = len(features)
    rotations = sixd_to_matrix(features[:, ROOT_FEATURES:].reshape(frames, skeleton.num_joints, 6))
    positions = features[:, :3].copy()
    if integrate_velocity and frames > 1:
        velocity = (yaw_matrix(heading(rotations[:, 0])) @ features[:, 3:6, None])[..., 0]
        steps = np.cumsum(velocity[1:] / fps, axis=0)
        positions[1:, 0] = positions[0, 0] + steps[:, 0]
        positions[1:, 2] = positions[0, 2] + steps[:, 2]
    return Motion(skeleton, positions, rotations, float(fps), source)
