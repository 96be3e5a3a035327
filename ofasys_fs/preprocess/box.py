"""BOX slots: a box in pixels of its image -> 4 location tokens `<bin>_i` (docs/design.md §7), and back.

Each coordinate is normalised by the image's original size (following a train-time crop/flip, see
`ImageGeometry`) and quantised as round(u * (num_bins - 1)), so bins do not depend on the resize.
The frame of a box is, in this order: the image named by `image=NAME`, the `size=W,H` attribute, the
only encoder image of the row. Without any, coordinates must already be normalised to [0, 1].
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np
import torch

from ..contracts import Preprocessor, SampleContext
from ..registry import register_preprocessor
from .image import ImageGeometry

PIXEL_TOLERANCE = 1.0  # boxes may overshoot the image by this much (rounding in annotations), then are clipped
EXPECTED = ('4 numbers x0,y0,x1,y1 with x0 <= x1 and y0 <= y1 ("x0,y0,x1,y1", a list, or a dict with keys '
            'x0, y0, x1, y1)')
KEYS = ("x0", "y0", "x1", "y1")


def parse_box(value: Any) -> tuple[float, float, float, float]:
    """A box value -> (x0, y0, x1, y1) floats; ValueError saying what was expected."""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[\s,]+", value.strip()) if p]
    elif isinstance(value, Mapping):
        if set(value) != set(KEYS):
            raise ValueError(f"box dict has keys {sorted(value)}; expected {EXPECTED}")
        parts = [value[key] for key in KEYS]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    elif isinstance(value, (np.ndarray, torch.Tensor)):
        parts = np.asarray(value).reshape(-1).tolist()
    else:
        raise ValueError(f"box of type {type(value).__name__} ({value!r:.80}); expected {EXPECTED}")
    if len(parts) != 4:
        raise ValueError(f"box {value!r:.80} has {len(parts)} numbers; expected {EXPECTED}")
    try:
        if any(isinstance(p, bool) for p in parts):
            raise TypeError
        coords = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"box {value!r:.80} is not numeric; expected {EXPECTED}") from None
    if not all(math.isfinite(c) for c in coords):
        raise ValueError(f"box {value!r:.80} has NaN or infinite coordinates; expected {EXPECTED}")
    x0, y0, x1, y1 = coords
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box {value!r:.80} has x1 < x0 or y1 < y0; expected {EXPECTED}")
    return coords


@register_preprocessor("box")
class BoxPreprocessor(Preprocessor):
    """BOX slot: x0,y0,x1,y1 in pixels of the bound image -> 4 `<bin>` ids; `postprocess` maps bins back."""

    modality = "BOX"
    text_like = True

    def __init__(self, slot: Any, vocab: Any, data_cfg: Any = None):
        super().__init__(slot, vocab, data_cfg)
        self.num_bins = len(vocab.range("bin"))
        if self.num_bins < 2:
            raise ValueError(f"BOX slot {slot} needs location bins, but the vocabulary has num_bins={self.num_bins}; "
                             f"use a VocabConfig with num_bins >= 2")
        size = slot.attrs.get("size")
        self.size = ImageGeometry(*(int(v) for v in size.split(","))) if size else None
        if self.size is not None and min(self.size.width, self.size.height) < 1:
            raise ValueError(f"BOX slot {slot}: size={size} must be positive W,H")

    def frame(self, image_sizes: Optional[dict]) -> Optional[ImageGeometry]:
        """The image geometry the box is in, or None when coordinates are already normalised."""
        image_sizes = image_sizes or {}
        name = self.slot.attrs.get("image")
        if name is not None:
            if name not in image_sizes:
                raise ValueError(f"BOX slot {self.slot} is bound to image {name!r}, but that image's size is unknown "
                                 f"(known: {sorted(image_sizes) or 'none'})")
            return ImageGeometry.of(image_sizes[name])
        if self.size is not None:
            return self.size
        if len(image_sizes) > 1:
            raise ValueError(f"BOX slot {self.slot}: the row has several encoder images {sorted(image_sizes)}; "
                             f"name the box's image with image=NAME")
        return ImageGeometry.of(next(iter(image_sizes.values()))) if image_sizes else None

    def normalised(self, value: Any, geometry: Optional[ImageGeometry]) -> tuple[float, ...]:
        """The box in [0, 1] coordinates of what the model sees."""
        box = parse_box(value)
        if geometry is None:
            if not all(0.0 <= c <= 1.0 for c in box):
                raise ValueError(f"box {value!r:.80}: without an image (image=NAME, size=W,H or one encoder image) "
                                 f"coordinates must be normalised to [0, 1]")
            return box
        width, height = geometry.width, geometry.height
        limits = (width, height, width, height)
        if any(c < -PIXEL_TOLERANCE or c > limit + PIXEL_TOLERANCE for c, limit in zip(box, limits)):
            raise ValueError(f"box {value!r:.80} lies outside its {width}x{height} image by more than "
                             f"{PIXEL_TOLERANCE:g} pixel; expected pixel coordinates within the image")
        clipped = [min(max(c, 0.0), limit) for c, limit in zip(box, limits)]
        return geometry.normalise_box(clipped)

    def __call__(self, value: Any, ctx: SampleContext) -> dict[str, torch.Tensor]:
        unit = self.normalised(value, self.frame(ctx.image_sizes))
        bins = [self.vocab.bin_id(int(round(u * (self.num_bins - 1)))) for u in unit]
        return {"tokens": torch.tensor(bins, dtype=torch.long)}

    def postprocess(self, tokens: list[int], row: Optional[dict] = None,
                    image_sizes: Optional[dict] = None) -> list[float]:
        """4 `<bin>` ids -> [x0, y0, x1, y1] in pixels of the original image (in [0, 1] without a frame).

        `image_sizes` is the sample's per-row entry of `sample["image_sizes"]` (the encoder images' geometry).
        """
        bin_ids = self.vocab.range("bin")
        bins = [t - bin_ids.start for t in tokens if t not in (self.vocab.bos, self.vocab.eos, self.vocab.pad)]
        if len(bins) != 4 or not all(0 <= b < self.num_bins for b in bins):
            raise ValueError(f"BOX slot {self.slot}: expected 4 <bin> tokens, got ids {list(tokens)}")
        left, top, right, bottom = (b / (self.num_bins - 1) for b in bins)
        geometry = self.frame(image_sizes)
        if geometry is None:
            return [left, top, right, bottom]
        if geometry.flipped:
            left, right = 1.0 - right, 1.0 - left
        x0, y0, x1, y1 = geometry.crop_box or (0, 0, geometry.width, geometry.height)
        return [x0 + left * (x1 - x0), y0 + top * (y1 - y0), x0 + right * (x1 - x0), y0 + bottom * (y1 - y0)]
