"""The "motion_6d" preprocessor (encoder side): any motion value -> the normalised motion_6d features of one
window, for captioning or classifying motion. As a decoder output (generation) it is not available yet.

A clip is resampled to the slot's fps (default DataConfig.motion_fps); with the slot's max_length=N it yields a
window of N frames (a random one on the train split, the centred one elsewhere) and a shorter clip is an error;
without it, the whole clip. Features are normalised with `statistics` when a task sets them (fitted on its
training split; every clip must then use their skeleton), else with the data-free default of the clip's skeleton.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from ..contracts import Preprocessor, SampleContext
from ..motion.clip import Motion
from ..motion.errors import MotionError
from ..motion.loading import load_motion
from ..motion.statistics import MotionStatistics, window_features
from ..registry import register_preprocessor
from ..rng import rng_for
from .config import DataConfig

DECODER_LATER = ("preprocessor 'motion_6d' as a decoder output (MOTION generation, e.g. text-to-motion) is not "
                 "available yet in ofasys_fs; MOTION works as an encoder input ([MOTION:clip] ... -> [TEXT:caption])")


@register_preprocessor("motion_6d")
class Motion6dPreprocessor(Preprocessor):
    """MOTION slot -> {"frames": FloatTensor [T, 6 + 6 J]}; collate pads to the longest with a padding mask."""

    modality = "MOTION"

    def __init__(self, slot: Any, vocab: Any, data_cfg: Optional[DataConfig] = None):
        super().__init__(slot, vocab, data_cfg)
        if getattr(slot, "side", "encoder") == "decoder":
            raise ValueError(DECODER_LATER)
        self.fps = float(slot.attrs.get("fps") or (data_cfg or DataConfig()).motion_fps)
        self.window = slot.attrs.get("max_length")
        self.statistics: Optional[MotionStatistics] = None

    def load(self, value: Any, base_dir: Optional[str] = None) -> Motion:
        """The clip at the configured rate, checked against the statistics' skeleton when there are some."""
        skeleton = self.statistics.skeleton if self.statistics is not None else None
        motion = load_motion(value, base_dir, skeleton=skeleton, array_fps=self.fps)
        if self.statistics is not None:
            self.statistics.check(motion)
        return motion.resampled(self.fps)

    def choose_window(self, motion: Motion, ctx: SampleContext) -> Motion:
        if self.window is None:
            return motion
        if motion.num_frames < self.window:
            raise MotionError(motion.source, f"{motion.num_frames} frames at {self.fps:g} fps "
                                             f"({motion.duration:.2f} s) after resampling, shorter than the window "
                                             f"max_length={self.window} ({self.window / self.fps:.2f} s); give "
                                             f"longer clips or a smaller max_length")
        room = motion.num_frames - self.window
        if ctx.is_train:
            start = int(rng_for(ctx.seed, ctx.task, ctx.epoch, ctx.row_index, f"motion_window:{ctx.column}")
                        .integers(room + 1))
        else:
            start = room // 2
        return motion.frames(start, start + self.window)

    def __call__(self, value: Any, ctx: SampleContext) -> dict[str, torch.Tensor]:
        window = self.choose_window(self.load(value, ctx.base_dir), ctx)
        statistics = self.statistics or MotionStatistics.for_skeleton(window.skeleton)
        return {"frames": torch.from_numpy(statistics.normalise(window_features(window))).float()}

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """frames [B, T_max, D] zero-padded, frame_lengths [B], padding_mask [B, T_max] (True = pad)."""
        if not items:
            raise ValueError("cannot collate an empty list of MOTION items")
        dims = sorted({item["frames"].size(1) for item in items})
        if len(dims) > 1:
            raise ValueError(f"MOTION features of {dims} values per frame in one batch: the clips use different "
                             f"skeletons; every clip of a task must use one skeleton")
        lengths = torch.tensor([item["frames"].size(0) for item in items], dtype=torch.long)
        frames = torch.nn.utils.rnn.pad_sequence([item["frames"] for item in items], batch_first=True)
        padding_mask = torch.arange(frames.size(1))[None, :] >= lengths[:, None]
        return {"frames": frames, "frame_lengths": lengths, "padding_mask": padding_mask}
