"""A stick figure per frame drawn with Pillow: an orthographic view turned `azimuth` degrees about the vertical,
one fixed scale for the whole clip (so travel stays visible), a ground line, bones as lines."""
from __future__ import annotations

import math
import os
from typing import Union

import numpy as np
from PIL import Image, ImageDraw

MAX_GIF_FPS = 30.0  # GIF delays are in 10 ms units and viewers slow down faster animations
BACKGROUND, GROUND, BONE, HEAD = (255, 255, 255), (170, 170, 170), (30, 60, 160), (200, 40, 40)


def project(positions: np.ndarray, size: int, azimuth: float, margin: float = 0.08) -> np.ndarray:
    """World positions [T, N, 3] (Y up) -> pixel coordinates [T, N, 2] of a size x size image, every frame
    under one scale and offset."""
    angle = math.radians(azimuth)
    horizontal = positions[..., 0] * math.cos(angle) - positions[..., 2] * math.sin(angle)
    screen = np.stack([horizontal, positions[..., 1]], axis=-1)
    low, high = screen.reshape(-1, 2).min(0), screen.reshape(-1, 2).max(0)
    scale = (1 - 2 * margin) * size / max(float((high - low).max()), 1e-9)
    centre = (low + high) / 2
    pixels = (screen - centre) * scale + size / 2
    pixels[..., 1] = size - pixels[..., 1]  # image rows grow downwards
    return pixels


def draw_frames(positions: np.ndarray, parents: np.ndarray, size: int = 256, azimuth: float = 30.0,
                line_width: int = 3) -> list[Image.Image]:
    """One RGB image per frame of positions [T, N, 3]; parents[i] is node i's parent (-1 for the root)."""
    pixels = project(positions, size, azimuth)
    ground = float(pixels[..., 1].max())
    head = int(np.argmax(positions[0, :, 1]))
    images = []
    for frame in pixels:
        image = Image.new("RGB", (size, size), BACKGROUND)
        draw = ImageDraw.Draw(image)
        draw.line([(0, ground), (size, ground)], fill=GROUND, width=1)
        for child, parent in enumerate(parents):
            if parent >= 0:
                draw.line([tuple(frame[parent]), tuple(frame[child])], fill=BONE, width=line_width)
        x, y = frame[head]
        radius = 1.5 * line_width
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=HEAD)
        images.append(image)
    return images


def render_gif(positions: np.ndarray, parents: np.ndarray, fps: float, path: Union[str, os.PathLike],
               size: int = 256, azimuth: float = 30.0, line_width: int = 3) -> int:
    """Write an animated GIF of the stick figure (every n-th frame when fps exceeds 30, keeping real time);
    returns the number of GIF frames."""
    step = max(1, math.ceil(fps / MAX_GIF_FPS - 1e-9))
    images = draw_frames(positions[::step], parents, size, azimuth, line_width)
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=max(10, round(1000 * step / fps)))
    return len(images)
