"""The "video" preprocessor: any video value -> N uniformly sampled frames, each prepared like an image."""
from __future__ import annotations

from typing import Any

import torch

from ..contracts import Preprocessor, SampleContext
from ..media import load_video
from ..registry import register_preprocessor
from ..rng import rng_for
from .common import stack_items
from .config import DataConfig
from .image import PixelSettings


@register_preprocessor("video")
class VideoPreprocessor(Preprocessor):
    """VIDEO slot -> {"frames": [N, 3, S, S]}: frames in time order, square-resized and normalised as images.

    On train a random frame of each of the N segments is taken (stateless RNG); elsewhere segment centres.
    """

    modality = "VIDEO"

    def __init__(self, slot: Any, vocab: Any, data_cfg: DataConfig):
        super().__init__(slot, vocab, data_cfg)
        self.pixels = PixelSettings.of(data_cfg)
        self.num_frames = int(slot.attrs.get("num_frames") or data_cfg.video_frames)

    def __call__(self, value: Any, ctx: SampleContext) -> dict[str, torch.Tensor]:
        rng = None
        if ctx.is_train:
            rng = rng_for(ctx.seed, ctx.task, ctx.epoch, ctx.row_index, f"video_frames:{ctx.column}")
        frames = load_video(value, ctx.base_dir, num_frames=self.num_frames, rng=rng)
        return {"frames": self.pixels.to_model_input(frames)}

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return stack_items(items, "VIDEO")
