"""Captioning and grounding of real drawings with human-written captions: Open Clip Art Library drawings (Debian's
`openclipart-png`, public domain; every PNG carries the title its author gave it) pasted on the photo textures of
photo_data.py. A drawing's caption is its title, lower case ("baseball glove", "ferro da stiro", "happy monkey"),
so captions are as varied as their authors wrote them, in several languages; the composites are synthetic.

The drawings are the first DRAWINGS of a fixed shuffle of the library's titled drawings (the same in every seed;
measured with openclipart-png 1:0.18+dfsg-19 of Debian 12); train and test rows show the same drawings at other
sizes, places and texture crops (test textures come from the photos' right 30%, as in photo_data.py).
"""
from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image

from . import photo_data

ROOT = Path(os.environ.get("OPENCLIPART_PNG", "/usr/share/openclipart/png"))
CATEGORIES = ("animals", "buildings", "containers", "electronics", "food", "office", "people", "plants", "recreation",
              "science", "tools", "transportation")
DRAWINGS = 40
MIN_SIDE = 20  # pixels of a drawing's visible part: smaller ones are mostly lines
MAX_PIXELS = 4096 * 4096  # a few pages of the library declare gigapixel canvases: not worth decoding
TITLE = re.compile(r"[a-z ]{3,30}")  # letters and spaces, 1-4 words: a caption, not a file name or a sentence


def caption(title: str) -> str:
    """A PNG's title as a caption: lower case, '_' and '-' as spaces, single spaces."""
    return re.sub(r"\s+", " ", title.lower().replace("_", " ").replace("-", " ")).strip()


def png_header(path: Path) -> tuple[int, int, str]:
    """(width, height, Title text) from a PNG's chunks before its pixels, without decoding them."""
    width = height = 0
    title = ""
    with open(path, "rb") as handle:
        if handle.read(8) != b"\x89PNG\r\n\x1a\n":
            raise ValueError(f"clipart tasks: {path} is not a PNG file")
        while True:
            head = handle.read(8)
            if len(head) < 8:
                break
            size, kind = struct.unpack(">I4s", head)
            if kind == b"IDAT":
                break
            data = handle.read(size + 4)[:size]  # the chunk and its CRC
            if kind == b"IHDR":
                width, height = struct.unpack(">II", data[:8])
            elif kind in (b"tEXt", b"zTXt", b"iTXt"):
                key, _, value = data.partition(b"\0")
                if key == b"Title":
                    if kind == b"zTXt":
                        value = zlib.decompress(value[1:])
                    elif kind == b"iTXt":  # compression flag, method, language\0, translated keyword\0, text
                        flag, value = value[0], value[2:].split(b"\0", 2)[-1]
                        value = zlib.decompress(value) if flag else value
                    title = value.decode("utf-8" if kind == b"iTXt" else "latin-1", errors="replace")
    return width, height, title


def catalogue(root: Path) -> list[tuple[str, Path]]:
    """(caption, path) of every drawing in CATEGORIES whose title is a caption that no other drawing has, by path."""
    if not root.is_dir():
        raise FileNotFoundError(f"clipart tasks: no Open Clip Art PNGs in {root} (expected Debian's openclipart-png: "
                                f"`make clipart` or `apt-get install openclipart-png`; OPENCLIPART_PNG names another "
                                f"folder)")
    found: dict[str, list[Path]] = {}
    for category in CATEGORIES:
        for path in sorted((root / category).rglob("*.png")):
            width, height, title = png_header(path)
            text = caption(title)
            if TITLE.fullmatch(text) and len(text.split()) <= 4 and width * height <= MAX_PIXELS:
                found.setdefault(text, []).append(path)
    return sorted((text, paths[0]) for text, paths in found.items() if len(paths) == 1)


def visible(path: Path) -> Image.Image:
    """The drawing as RGBA, cropped to its non-transparent part."""
    with Image.open(path) as image:
        drawing = image.convert("RGBA")
    box = drawing.getchannel("A").getbbox()
    return drawing.crop(box) if box else drawing


class Drawings:
    """The chosen drawings and the photo textures, loaded once."""

    def __init__(self, root: Optional[Path] = None, count: Optional[int] = None):
        root, count = root or ROOT, count or DRAWINGS
        candidates = catalogue(root)
        np.random.default_rng(0).shuffle(candidates)
        self.drawings: list[tuple[str, Image.Image]] = []
        for text, path in candidates:
            drawing = visible(path)
            if min(drawing.size) >= MIN_SIDE:
                self.drawings.append((text, drawing))
            if len(self.drawings) == count:
                break
        if len(self.drawings) < count:
            raise ValueError(f"clipart tasks: {root} has {len(self.drawings)} usable titled drawings, {count} needed")
        self.photos = photo_data.Photos()

    def composite(self, split: str, count: int, rng: np.random.Generator) -> tuple[Image.Image, list]:
        """(canvas, [(caption, box), ...]): `count` different drawings, each scaled so that its longer side is
        20-30 px, at places that do not overlap, on a texture of the split; a box bounds the drawing's pixels."""
        _, canvas = self.photos.background(split, rng)
        chosen = rng.choice(len(self.drawings), size=count, replace=False)
        sides = [int(rng.integers(photo_data.OBJECT_SIDES[0], photo_data.OBJECT_SIDES[1] + 1)) for _ in chosen]
        placed = []
        for index, side, (x, y, _, _) in zip(chosen, sides, photo_data.place(sides, rng)):
            text, drawing = self.drawings[index]
            scale = side / max(drawing.size)
            small = drawing.resize((max(1, round(drawing.width * scale)), max(1, round(drawing.height * scale))),
                                   Image.BILINEAR)
            canvas.paste(small, (x, y), small)
            placed.append((text, [x, y, x + small.width, y + small.height]))
        return canvas.convert("RGB"), placed


def caption_rows(drawings: Drawings, split: str, count: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    for _ in range(count):
        canvas, ((text, _),) = drawings.composite(split, 1, rng)
        rows.append({"img": canvas, "cap": text})
    return rows


def grounding_rows(drawings: Drawings, split: str, count: int, rng: np.random.Generator) -> list[dict]:
    """One row per canvas of two drawings, naming one; `boxes` keeps both boxes (for "box a random object")."""
    rows = []
    for _ in range(count):
        canvas, placed = drawings.composite(split, 2, rng)
        text, box = placed[int(rng.integers(len(placed)))]
        rows.append({"img": canvas, "text": text, "box": box, "boxes": [b for _, b in placed]})
    return rows


def texture_rows(drawings: Drawings, split: str, count: int, rng: np.random.Generator) -> list[dict]:
    """photo_data's classification of real photo crops, so that the set has the kinds of the issue's check."""
    return photo_data.texture_rows(drawings.photos, split, count, rng)


BUILDERS: dict[str, Callable[[Drawings, str, int, np.random.Generator], list[dict]]] = {
    "photo_texture": texture_rows, "clipart_caption": caption_rows, "clipart_grounding": grounding_rows,
}
