"""The "image" preprocessor: any image value -> a normalised square tensor, plus the geometry BOX slots need.

OFA resizes every image to a square without keeping the aspect ratio and normalises with mean = std =
0.5. Boxes are quantised in normalised coordinates of the original image, so the output records the
original size and, when train-time augmentation cropped or flipped the image, where the crop lies.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..contracts import Preprocessor, SampleContext
from ..media import load_image
from ..registry import register_preprocessor
from ..rng import rng_for
from .common import stack_items
from .config import DataConfig

CROP_SCALE = (0.6, 1.0)  # fraction of the original area a random resized crop keeps
CROP_ASPECT = (3 / 4, 4 / 3)


@dataclasses.dataclass(frozen=True)
class PixelSettings:
    """Square side, resize filter and per-channel normalisation shared by images and video frames (from the
    data config)."""

    size: int
    mean: tuple
    std: tuple
    resize: str = "torch"

    @classmethod
    def of(cls, data_cfg: DataConfig) -> "PixelSettings":
        return cls(data_cfg.image_size, data_cfg.image_mean, data_cfg.image_std, data_cfg.image_resize)

    def to_model_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [..., 3, H, W] -> float [..., 3, size, size]: bicubic square resize, then (x/255 - mean) / std."""
        leading = pixels.shape[:-3]
        pixels = pixels.reshape(-1, *pixels.shape[-3:])
        if self.resize == "pil" and pixels.shape[-2:] != (self.size, self.size):
            pixels = torch.stack([pil_resize(image, self.size) for image in pixels])
        images = pixels.float() / 255
        if images.shape[-2:] != (self.size, self.size):
            resized = F.interpolate(images, size=(self.size, self.size), mode="bicubic", antialias=True)
            # back on the 8-bit grid, as a PIL resize would be: a solid colour stays exactly that colour
            images = (resized * 255).round().clamp(0, 255) / 255
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return ((images - mean) / std).reshape(*leading, 3, self.size, self.size)


def pil_resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [3, H, W] -> uint8 [3, size, size] through PIL's bicubic filter (what OFA's torchvision Resize does to
    its PIL images)."""
    resized = Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).numpy())).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)


@dataclasses.dataclass(frozen=True)
class ImageGeometry:
    """Where the model's square image comes from in the original: size, crop (x0, y0, x1, y1) and flip.

    BOX preprocessors use it to map a box given in original pixels to normalised coordinates of what the
    model sees, so boxes follow crops and flips.
    """

    width: int
    height: int
    crop_box: Optional[tuple] = None  # in original pixels; None = the whole image
    flipped: bool = False

    @classmethod
    def of(cls, value: Any) -> "ImageGeometry":
        """From an image preprocessor output dict, a (W, H) pair, or an ImageGeometry."""
        if isinstance(value, ImageGeometry):
            return value
        if isinstance(value, dict):
            width, height = (int(v) for v in value["orig_size"])
            crop = value.get("crop_box")
            return cls(width, height, None if crop is None else tuple(int(v) for v in crop),
                       bool(value.get("flipped", False)))
        width, height = (int(v) for v in value)
        return cls(width, height)

    def normalise_box(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        """Box (x0, y0, x1, y1) in original pixels -> [0, 1] coordinates in the model's image, clipped to the crop."""
        x0, y0, x1, y1 = self.crop_box or (0, 0, self.width, self.height)
        crop_width, crop_height = x1 - x0, y1 - y0
        left, right = ((float(box[i]) - x0) / crop_width for i in (0, 2))
        top, bottom = ((float(box[i]) - y0) / crop_height for i in (1, 3))
        left, top, right, bottom = (min(max(v, 0.0), 1.0) for v in (left, top, right, bottom))
        if self.flipped:
            left, right = 1.0 - right, 1.0 - left
        return left, top, right, bottom


def random_crop_box(width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random resized crop (area fraction in CROP_SCALE, aspect in CROP_ASPECT) as (x0, y0, x1, y1) pixels."""
    area = width * height * rng.uniform(*CROP_SCALE)
    aspect = math.exp(rng.uniform(math.log(CROP_ASPECT[0]), math.log(CROP_ASPECT[1])))
    crop_width = min(width, max(1, round(math.sqrt(area * aspect))))
    crop_height = min(height, max(1, round(math.sqrt(area / aspect))))
    x0 = int(rng.integers(0, width - crop_width + 1))
    y0 = int(rng.integers(0, height - crop_height + 1))
    return x0, y0, x0 + crop_width, y0 + crop_height


def mask_centre(image: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero a centred square covering `ratio` of the area of a [..., S, S] image (OFA image infilling)."""
    size = image.shape[-1]
    side = round(size * math.sqrt(ratio))
    start = (size - side) // 2
    image[..., start : start + side, start : start + side] = 0
    return image


def slot_side(slot: Any, data_cfg: DataConfig) -> int:
    """The square side of a slot's images: its `size` attribute, else the model's image_size."""
    side = slot.attrs.get("size")
    if side is None:
        return data_cfg.image_size
    if side > data_cfg.image_size or side % data_cfg.image_side_multiple:
        raise ValueError(f"size={side} must be at most the model's image_size={data_cfg.image_size} and a multiple "
                         f"of its patch_size={data_cfg.image_side_multiple}")
    return side


@register_preprocessor("image")
class ImagePreprocessor(Preprocessor):
    """IMAGE slot -> {"image": [3, S, S], "orig_size": [W, H], "crop_box": [4], "flipped": bool}.

    Train split with data config image_augment: random resized crop and horizontal flip (stateless RNG).
    `mask_ratio` blanks the centre on every split.
    """

    modality = "IMAGE"

    def __init__(self, slot: Any, vocab: Any, data_cfg: DataConfig):
        super().__init__(slot, vocab, data_cfg)
        self.pixels = dataclasses.replace(PixelSettings.of(data_cfg), size=slot_side(slot, data_cfg))
        self.augment = data_cfg.image_augment
        self.mask_ratio = float(slot.attrs.get("mask_ratio") or 0.0)

    def __call__(self, value: Any, ctx: SampleContext) -> dict[str, torch.Tensor]:
        pixels = torch.from_numpy(np.array(load_image(value, ctx.base_dir))).permute(2, 0, 1)
        height, width = pixels.shape[-2:]
        crop, flipped = (0, 0, width, height), False
        if self.augment and ctx.is_train:
            rng = rng_for(ctx.seed, ctx.task, ctx.epoch, ctx.row_index, f"image_augment:{ctx.column}")
            crop, flipped = random_crop_box(width, height, rng), bool(rng.random() < 0.5)
            pixels = pixels[:, crop[1] : crop[3], crop[0] : crop[2]]
            if flipped:
                pixels = pixels.flip(-1)
        image = self.pixels.to_model_input(pixels)
        if self.mask_ratio > 0:
            mask_centre(image, self.mask_ratio)
        return {
            "image": image,
            "orig_size": torch.tensor([width, height], dtype=torch.long),
            "crop_box": torch.tensor(crop, dtype=torch.long),
            "flipped": torch.tensor(flipped),
        }

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return stack_items(items, "IMAGE")
