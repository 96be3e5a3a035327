"""Pixels in and out of image tokenizers: any image value -> the tokenizer's input tensor, tensors -> PIL
images, PSNR, and a grid picture of many images."""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from ..contracts import ImageTokenizer
from ..media import load_image

GRID_GAP = 2  # pixels between the cells of a grid picture


def image_tensor(value: Any, size: int, channels: int, base_dir: Optional[str] = None) -> torch.Tensor:
    """Any image form `load_image` reads -> float [channels, size, size] in [0, 1] (grey for 1 channel,
    resized to the square side with bicubic antialiasing)."""
    image = load_image(value, base_dir).convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    pixels = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0)
    return pixels[None] if channels == 1 else pixels.permute(2, 0, 1)


def to_pil(pixels: torch.Tensor) -> Image.Image:
    """Float [C, H, W] in [0, 1] (C = 1 or 3) -> a PIL image (mode L or RGB)."""
    array = (pixels.detach().float().clamp(0, 1) * 255).round().byte().cpu()
    if array.size(0) == 1:
        return Image.fromarray(array[0].numpy(), mode="L")
    return Image.fromarray(array.permute(1, 2, 0).numpy(), mode="RGB")


def psnr(reconstructed: torch.Tensor, original: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (over the whole batch)."""
    mse = float(torch.mean((reconstructed.float() - original.float()) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


@torch.no_grad()
def reconstruct(tokenizer: ImageTokenizer, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """decode(encode(images)): what the tokenizer keeps of images [N, C, S, S] (the ceiling of generation)."""
    parts = [tokenizer.decode(tokenizer.encode(images[start:start + batch_size]))
             for start in range(0, len(images), batch_size)]
    return torch.cat(parts) if parts else images.clone()


def image_grid(images: Sequence[Image.Image], columns: int, scale: int = 1,
               background: int = 255) -> Image.Image:
    """The images in rows of `columns` cells (each cell the largest image's size, times `scale`)."""
    if not images:
        raise ValueError("image_grid: no images")
    width = max(image.size[0] for image in images) * scale
    height = max(image.size[1] for image in images) * scale
    rows = math.ceil(len(images) / columns)
    mode = "RGB" if any(image.mode != "L" for image in images) else "L"
    canvas = Image.new(mode, (columns * (width + GRID_GAP) - GRID_GAP, rows * (height + GRID_GAP) - GRID_GAP),
                       (background,) * 3 if mode == "RGB" else background)
    for index, image in enumerate(images):
        cell = image.convert(mode).resize((image.size[0] * scale, image.size[1] * scale), Image.NEAREST)
        canvas.paste(cell, ((index % columns) * (width + GRID_GAP), (index // columns) * (height + GRID_GAP)))
    return canvas
