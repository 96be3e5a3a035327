"""Three tasks on real photographs from scikit-image's bundled sample data (scikit-image 0.26.0, installed
from PyPI; nothing is downloaded): which photo a crop comes from (classification), a caption of an object
pasted on a photo texture (captioning), and where a named object is among 2-3 pasted objects (grounding).

Every picture is a real photograph. Every word is human-written: each photo's name is the first sentence
of its scikit-image docstring ("Coffee cup", "Chelsea the cat", "Launch photo of DSCOVR on Falcon 9 by
SpaceX"); captions join an object's name and a texture's name with "on". The composites (where an object
sits, how big, which texture) are synthetic. Held-out rows come from parts of the photos training never
sees: textures and crops are cut from the right 30% of a photo for test (left 60% train, the 10% between
valid), and object cut-outs are re-cropped, scaled and placed at random.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

SIDE = 64  # canvas pixels
OBJECTS = ("astronaut", "chelsea", "coffee", "coins", "horse", "rocket", "retina", "clock")
# the object's region of its photo (x0, y0, x1, y1 as fractions), so that the cut-out shows the object
OBJECT_REGIONS = {"astronaut": (0.25, 0.0, 0.75, 0.55), "chelsea": (0.2, 0.05, 0.6, 0.75),
                  "coffee": (0.05, 0.05, 0.85, 0.95), "coins": (0.0, 0.0, 0.5, 0.5), "horse": (0.0, 0.0, 1.0, 1.0),
                  "rocket": (0.35, 0.0, 0.65, 1.0), "retina": (0.1, 0.1, 0.9, 0.9), "clock": (0.2, 0.1, 0.8, 0.9)}
TEXTURES = ("brick", "grass", "gravel", "moon")
CROP_PHOTOS = ("astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel",
               "hubble_deep_field", "immunohistochemistry", "moon", "rocket")
SPLIT_COLUMNS = {"train": (0.0, 0.6), "valid": (0.6, 0.7), "test": (0.7, 1.0)}  # of a photo's width
OBJECT_SIDES = (20, 30)
JITTER = 0.1  # an object cut-out loses up to this fraction of its region on each side


def skimage_data():
    from skimage import data  # scikit-image is only needed by the harness

    return data


def photo_name(name: str) -> str:
    """The first sentence of the photo's scikit-image docstring, lower case: human-written."""
    doc = getattr(skimage_data(), name).__doc__.strip().splitlines()[0]
    return doc.strip().rstrip(".").lower()


def photo(name: str) -> np.ndarray:
    """The photo as uint8 RGB [H, W, 3]."""
    image = np.asarray(getattr(skimage_data(), name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.dtype != np.uint8:  # horse is boolean
        image = image.astype(float)
        image = (255 * (image - image.min()) / max(np.ptp(image), 1e-9)).astype(np.uint8)
    return image[..., :3]


def crop(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box
    return image[int(y0 * height):max(int(y1 * height), int(y0 * height) + 1),
                 int(x0 * width):max(int(x1 * width), int(x0 * width) + 1)]


def random_crop(image: np.ndarray, split: str, side_fraction: tuple[float, float],
                rng: np.random.Generator) -> Image.Image:
    """A square crop of the split's columns of `image`, side a random fraction of the photo's height."""
    start, end = SPLIT_COLUMNS[split]
    part = crop(image, (start, 0.0, end, 1.0))
    height, width = part.shape[:2]
    side = min(int(rng.uniform(*side_fraction) * image.shape[0]), height, width)
    x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    return Image.fromarray(part[y:y + side, x:x + side])


def cut_out(image: np.ndarray, region: tuple[float, float, float, float], side: int,
            rng: np.random.Generator) -> Image.Image:
    """The object's region with each edge moved inwards by up to JITTER, resized to `side` pixels."""
    x0, y0, x1, y1 = region
    w, h = x1 - x0, y1 - y0
    jittered = (x0 + rng.uniform(0, JITTER) * w, y0 + rng.uniform(0, JITTER) * h,
                x1 - rng.uniform(0, JITTER) * w, y1 - rng.uniform(0, JITTER) * h)
    return Image.fromarray(crop(image, jittered)).resize((side, side), Image.BILINEAR)


def place(sides: list[int], rng: np.random.Generator, tries: int = 10000) -> list[list[int]]:
    """Non-overlapping boxes [x0, y0, x1, y1] of the given sides on the canvas (random layouts until one fits)."""
    for _ in range(tries):
        boxes: list[list[int]] = []
        for side in sides:
            x, y = int(rng.integers(0, SIDE - side + 1)), int(rng.integers(0, SIDE - side + 1))
            box = [x, y, x + side, y + side]
            if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes):
                break
            boxes.append(box)
        if len(boxes) == len(sides):
            return boxes
    raise RuntimeError(f"could not place {len(sides)} objects of sides {sides} on a {SIDE} px canvas")


class Photos:
    """The photos and names, loaded once."""

    def __init__(self):
        self.images = {name: photo(name) for name in {*OBJECTS, *TEXTURES, *CROP_PHOTOS}}
        self.names = {name: photo_name(name) for name in self.images}

    def background(self, split: str, rng: np.random.Generator) -> tuple[str, Image.Image]:
        texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
        return texture, random_crop(self.images[texture], split, (0.25, 0.5), rng).resize((SIDE, SIDE))

    def composite(self, split: str, count: int, rng: np.random.Generator) -> tuple[Image.Image, str, list]:
        """(canvas, texture, [(object, box), ...]) with `count` different objects on a texture."""
        texture, canvas = self.background(split, rng)
        objects = [OBJECTS[i] for i in rng.choice(len(OBJECTS), size=count, replace=False)]
        sides = [int(rng.integers(OBJECT_SIDES[0], OBJECT_SIDES[1] + 1)) for _ in objects]
        boxes = place(sides, rng)
        for name, side, box in zip(objects, sides, boxes):
            canvas.paste(cut_out(self.images[name], OBJECT_REGIONS[name], side, rng), tuple(box[:2]))
        return canvas, texture, list(zip(objects, boxes))


def texture_rows(photos: Photos, split: str, count: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    for _ in range(count):
        name = CROP_PHOTOS[int(rng.integers(len(CROP_PHOTOS)))]
        image = random_crop(photos.images[name], split, (0.15, 0.4), rng).resize((SIDE, SIDE))
        rows.append({"img": image, "label": photos.names[name]})
    return rows


def caption_rows(photos: Photos, split: str, count: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    for _ in range(count):
        canvas, texture, ((name, _),) = photos.composite(split, 1, rng)
        rows.append({"img": canvas, "cap": f"{photos.names[name]} on {photos.names[texture]}"})
    return rows


def grounding_rows(photos: Photos, split: str, count: int, rng: np.random.Generator) -> list[dict]:
    """One row per canvas of 2-3 objects, naming one of them; `boxes` keeps every object's box (for the
    rule that boxes a random object)."""
    rows = []
    for _ in range(count):
        canvas, _, placed = photos.composite(split, int(rng.integers(2, 4)), rng)
        name, box = placed[int(rng.integers(len(placed)))]
        rows.append({"img": canvas, "text": photos.names[name], "box": box, "boxes": [b for _, b in placed]})
    return rows


BUILDERS: dict[str, Callable[[Photos, str, int, np.random.Generator], list[dict]]] = {
    "photo_texture": texture_rows, "photo_caption": caption_rows, "photo_grounding": grounding_rows,
}
