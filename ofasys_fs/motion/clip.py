"""Motion: one clip on one skeleton (root positions and local joint rotations at a frame rate), with the
operations a data pipeline needs (time span, resampling, windows, anchoring) and its writers (BVH, GIF, npz)."""
from __future__ import annotations

import dataclasses
import io
import math
import os
from typing import Iterator, Union

import numpy as np

from .bvh import format_bvh, parse_bvh
from .errors import MotionError
from .render import render_gif
from .rotations import euler_to_matrix, heading, matrix_to_euler, slerp, yaw_matrix
from .skeleton import Skeleton

PathLike = Union[str, os.PathLike]
WHOLE_RATE_TOLERANCE = 1e-4  # relative


def rate_of(frame_time: float) -> float:
    """Frames per second of a BVH frame time. Files store it rounded (".0083333" for 120 fps), so a rate within
    0.01% of a whole number is that number; resampling to 30 fps then keeps every 4th frame exactly."""
    rate = 1.0 / frame_time
    return float(round(rate)) if abs(rate - round(rate)) <= WHOLE_RATE_TOLERANCE * rate else rate


@dataclasses.dataclass
class Motion:
    """root_positions [T, 3] and local joint rotations [T, J, 3, 3] (J = skeleton.num_joints) at `fps` frames per
    second; `source` names where it came from in error messages."""

    skeleton: Skeleton
    root_positions: np.ndarray
    rotations: np.ndarray
    fps: float
    source: str = "motion"

    def __post_init__(self) -> None:
        frames = len(self.root_positions)
        if self.root_positions.shape != (frames, 3) or self.rotations.shape != (frames, self.skeleton.num_joints, 3, 3):
            raise ValueError(f"{self.source}: root_positions {self.root_positions.shape} and rotations "
                             f"{self.rotations.shape} do not fit {self.skeleton.num_joints} joints over {frames} "
                             f"frames")

    # ---- BVH channels ---------------------------------------------------------------------------

    @classmethod
    def from_channels(cls, skeleton: Skeleton, channels: np.ndarray, fps: float, source: str = "motion") -> "Motion":
        """Channel values [T, C] in the skeleton's column order (degrees for rotations)."""
        channels = np.asarray(channels, dtype=np.float64)
        if channels.ndim != 2 or channels.shape[1] != skeleton.num_channels:
            raise MotionError(source, f"channel array of shape {list(channels.shape)}; expected [frames, "
                                      f"{skeleton.num_channels}] (one column per channel of the skeleton)")
        rotations = np.stack([euler_to_matrix(channels[:, columns], order)
                              for columns, order in zip(skeleton.rotation_columns, skeleton.rotation_orders)], axis=1)
        return cls(skeleton, channels[:, skeleton.position_columns], rotations, float(fps), source)

    def channels(self) -> np.ndarray:
        """Channel values [T, C] as a BVH frame line holds them (Euler angles recomputed from the rotations)."""
        channels = np.zeros((self.num_frames, self.skeleton.num_channels))
        channels[:, self.skeleton.position_columns] = self.root_positions
        for joint, (columns, order) in enumerate(zip(self.skeleton.rotation_columns, self.skeleton.rotation_orders)):
            channels[:, columns] = matrix_to_euler(self.rotations[:, joint], order)
        return channels

    @classmethod
    def from_bvh(cls, text: str, source: str = "BVH text") -> "Motion":
        skeleton, channels, frame_time = parse_bvh(text, source)
        return cls.from_channels(skeleton, channels, rate_of(frame_time), source)

    def to_bvh(self) -> str:
        return format_bvh(self.skeleton, self.channels(), 1.0 / self.fps)

    def save_as_bvh(self, path: PathLike) -> None:
        """Write a BVH file that any motion-capture tool opens (the skeleton's hierarchy, one line per frame)."""
        with open(path, "w", encoding="utf-8") as file:
            file.write(self.to_bvh())

    def save_npz(self, path: PathLike) -> None:
        """Lossless binary form: `frames` (channel values), `frame_time` and `hierarchy` (the BVH header text)."""
        buffer = io.BytesIO()
        np.savez(buffer, frames=self.channels(), frame_time=np.float64(1.0 / self.fps),
                 hierarchy=np.str_(self.skeleton.header()))
        with open(path, "wb") as file:
            file.write(buffer.getvalue())

    def save_as_gif(self, path: PathLike, **options) -> None:
        """A stick-figure animation drawn with Pillow, one GIF frame per motion frame (options: render_gif's)."""
        render_gif(self.joint_positions(), self.skeleton.parents, self.fps, path, **options)

    # ---- time ------------------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return len(self.root_positions)

    @property
    def duration(self) -> float:
        """Seconds from the first frame to one frame past the last."""
        return self.num_frames / self.fps

    def frames(self, start: int, stop: int) -> "Motion":
        """Frames start..stop-1 (a copy)."""
        return dataclasses.replace(self, root_positions=self.root_positions[start:stop].copy(),
                                   rotations=self.rotations[start:stop].copy())

    def between(self, start: float = 0.0, end: float = math.inf) -> "Motion":
        """The frames whose time (index / fps) lies in [start, end) seconds; an empty span is an error."""
        first = max(0, math.ceil(start * self.fps - 1e-9))
        stop = min(self.num_frames, math.ceil(end * self.fps - 1e-9)) if math.isfinite(end) else self.num_frames
        if stop <= first:
            raise MotionError(self.source, f"the span [{start:g} s, {end:g} s) holds no frame; the clip lasts "
                                           f"{self.duration:.3f} s ({self.num_frames} frames at {self.fps:g} fps)")
        return self.frames(first, stop)

    def resampled(self, fps: float) -> "Motion":
        """The clip at another frame rate: frames at k / fps seconds, positions interpolated linearly and
        rotations by slerp; an integer ratio of rates keeps exactly every n-th frame."""
        if fps == self.fps:
            return self
        count = int(math.floor((self.num_frames - 1) * fps / self.fps + 1e-9)) + 1
        times = np.arange(count) * (self.fps / fps)
        before = np.minimum(np.floor(times + 1e-9).astype(np.int64), self.num_frames - 1)
        after = np.minimum(before + 1, self.num_frames - 1)
        weight = np.clip(times - before, 0.0, 1.0)
        weight[weight < 1e-9] = 0.0
        positions = (1 - weight[:, None]) * self.root_positions[before] + weight[:, None] * self.root_positions[after]
        rotations = self.rotations[before]
        between = weight > 0
        if between.any():
            weights = np.repeat(weight[between, None], self.skeleton.num_joints, axis=1)
            rotations[between] = slerp(rotations[between], self.rotations[after[between]], weights)
        return Motion(self.skeleton, positions, rotations, float(fps), self.source)

    def windows(self, length: int, stride: int) -> Iterator["Motion"]:
        """Every window of `length` frames starting at 0, stride, 2 * stride, ... that fits in the clip."""
        for start in range(0, self.num_frames - length + 1, stride):
            yield self.frames(start, start + length)

    # ---- space -----------------------------------------------------------------------------------

    def anchored(self, frame: int = 0) -> "Motion":
        """The clip moved on the ground and turned about the vertical so that `frame`'s root stands above the
        origin facing +Z (its height unchanged): what is left is the motion, not where it happened."""
        turn = yaw_matrix(-heading(self.rotations[frame, 0]))
        shift = self.root_positions[frame] * np.array([1.0, 0.0, 1.0])
        rotations = self.rotations.copy()
        rotations[:, 0] = turn @ rotations[:, 0]
        return dataclasses.replace(self, root_positions=(self.root_positions - shift) @ turn.T, rotations=rotations)

    def joint_positions(self) -> np.ndarray:
        """World positions of every node (joints and end sites) [T, nodes, 3], by forward kinematics."""
        return self.skeleton.forward_kinematics(self.root_positions, self.rotations)
