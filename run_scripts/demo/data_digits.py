"""Four tasks from scikit-learn's real handwritten digits (UCI, 8x8 pixels, 16 grey levels, bundled with the
package): which digit a canvas shows; where a named digit is on a canvas of 2-3 digits in a 2 x 2 grid
(grounding -> BOX); which of 2-3 digits is in a given box (BOX input); which way a digit moves in a short
clip (VIDEO). The digits are real; the canvas layouts and the motion are synthetic.

Canvases and clips have a dim colour ramp as background (red grows to the right, green downwards). The
image_patch adaptor gives positions to attention as biases only (docs/model.md), so a patch embedding itself
does not say where the patch is; the ramp lets it see that, as coordinate channels do in CoordConv.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple, Optional

import av
import numpy as np
from PIL import Image, ImageChops
from sklearn.datasets import load_digits

from .data_common import SPLITS, SplitSizes, rng_for, write_split

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
POOL_SHARES = {"train": 0.6, "valid": 0.1, "test": 0.3}  # of the 1,797 digits; the splits never share a digit
CANVAS_SIDE = 48  # the model's image size: no resizing
CANVAS_CELLS = 2  # per side: digits sit in the cells of a 2 x 2 grid, so that they never overlap
CELL_DIGIT_SIDES = (24, 24)  # a digit fills its cell, on the 8 px patch grid
CHOICE_DIGIT_COUNTS = (2, 3)  # digits per canvas of grounding and region: the text or box must choose one
SINGLE_TO_CHOICE_DIGIT_COUNTS = (1, 3)  # grounding's training canvases: some with a single, unambiguous digit
VIDEO_SIDE = 48
VIDEO_DIGIT_SIDES = (16, 20)
VIDEO_FRAMES = 8
VIDEO_STEP = 3  # pixels per frame
INK_LEVEL = 64  # a rendered digit's pixel this bright or brighter is ink
RAMP_LEVELS = (30, 170)  # background channel value at the first and the last pixel
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def digit_pools(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (uint8 images [N, 8, 8], labels [N]): a fixed disjoint split of the 1,797 digits."""
    digits = load_digits()
    images = np.round(digits.images / 16 * 255).astype(np.uint8)
    order = rng_for(seed, "digit_pools").permutation(len(images))
    pools, start = {}, 0
    for split in SPLITS:
        end = len(images) if split == SPLITS[-1] else start + int(POOL_SHARES[split] * len(images))
        pools[split] = images[order[start:end]], digits.target[order[start:end]]
        start = end
    return pools


class PlacedDigit(NamedTuple):
    """A digit on a canvas: its name and the bounding box of its ink."""

    name: str
    ink_box: list[int]


def render(digit: np.ndarray, side: int) -> Image.Image:
    return Image.fromarray(digit, mode="L").resize((side, side), Image.BILINEAR)


def coordinate_ramp(side: int) -> Image.Image:
    """An RGB background whose red channel grows left to right and green top to bottom."""
    ramp = np.linspace(*RAMP_LEVELS, side).round().astype(np.uint8)
    pixels = np.zeros((side, side, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = ramp[None, :], ramp[:, None], RAMP_LEVELS[0]
    return Image.fromarray(pixels, mode="RGB")


def on_ramp(digits: Image.Image) -> Image.Image:
    """Bright digit strokes (a greyscale layer) over the coordinate ramp."""
    return ImageChops.lighter(coordinate_ramp(digits.width), digits.convert("RGB"))


def build_digit_classify(folder: Path, sizes: SplitSizes, seed: int) -> None:
    """img (one digit in a random cell of the canvas) -> its name. Digits at the canvas's scale teach the
    reading that the region task needs (a 32 px digit filling the image did not)."""
    write_canvas_rows(folder, sizes, seed, "classify", (1, 1), CELL_DIGIT_SIDES,
                      lambda image, digit, placed: {"img": image, "label": digit.name})


def make_canvas(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, digit_counts: tuple[int, int],
                digit_sides: tuple[int, int]) -> tuple[Image.Image, list[PlacedDigit]]:
    """A 48 px canvas of 2 x 2 cells, `digit_counts` (inclusive range) of them holding a different digit of a
    random side in `digit_sides` at a random offset inside the cell, over the coordinate ramp."""
    canvas = Image.new("L", (CANVAS_SIDE, CANVAS_SIDE))
    cell = CANVAS_SIDE // CANVAS_CELLS
    placed: list[PlacedDigit] = []
    cells = rng.choice(CANVAS_CELLS**2, size=int(rng.integers(digit_counts[0], digit_counts[1] + 1)), replace=False)
    used: set[int] = set()
    for position in cells:
        index = int(rng.integers(len(images)))
        while labels[index] in used:
            index = int(rng.integers(len(images)))
        side = int(rng.integers(digit_sides[0], digit_sides[1] + 1))
        row, column = divmod(int(position), CANVAS_CELLS)
        x, y = (cell_index * cell + int(rng.integers(0, cell - side + 1)) for cell_index in (column, row))
        digit = render(images[index], side)
        canvas.paste(digit, (x, y))
        used.add(labels[index])
        placed.append(PlacedDigit(DIGIT_NAMES[labels[index]], ink_box(digit, x, y)))
    return on_ramp(canvas), placed


def ink_box(digit: Image.Image, x: int, y: int) -> list[int]:
    """The bounding box of a rendered digit's ink once pasted at (x, y); the whole square if it has none."""
    ink_rows, ink_columns = np.nonzero(np.asarray(digit) >= INK_LEVEL)
    if ink_rows.size == 0:
        return [x, y, x + digit.width, y + digit.height]
    return [x + int(ink_columns.min()), y + int(ink_rows.min()), x + int(ink_columns.max()) + 1,
            y + int(ink_rows.max()) + 1]


RowOf = Callable[[str, PlacedDigit, list[PlacedDigit]], dict]  # (image path, asked digit, every digit) -> row


def write_canvas_rows(folder: Path, sizes: SplitSizes, seed: int, stage: str, digit_counts: tuple[int, int],
                      digit_sides: tuple[int, int], row_of: RowOf, ask_every_digit_in_train: bool = False,
                      train_digit_counts: Optional[tuple[int, int]] = None) -> None:
    """Canvases (make_canvas) and their rows, `row_of(image path, asked digit, every digit)`: one row per
    canvas, for a random digit; with `ask_every_digit_in_train`, a training canvas gets a row for each of its
    digits instead, so that only the question tells such rows apart. `train_digit_counts`, when given,
    replaces `digit_counts` for the training canvases."""
    pools = digit_pools(seed)
    for split in SPLITS:
        rng = rng_for(seed, stage, split)
        rows: list[dict] = []
        while len(rows) < sizes.of(split):
            counts = train_digit_counts if train_digit_counts and split == "train" else digit_counts
            canvas, placed = make_canvas(*pools[split], rng, counts, digit_sides)
            image = f"media/{split}_{len(rows):05d}.png"
            save(canvas, folder / image)
            every = ask_every_digit_in_train and split == "train"
            asked = placed if every else [placed[int(rng.integers(len(placed)))]]
            rows += [row_of(image, digit, placed) for digit in asked]
        write_split(folder, split, rows[:sizes.of(split)])


def build_digit_grounding(folder: Path, sizes: SplitSizes, seed: int) -> None:
    """img (2-3 different digits; 1-3 in training) + the name of one of them (cap) -> the bounding box of its
    ink (patch_boxes); `digit_boxes` lists every digit's box, for the name-blind baseline. As in the region
    task, a training canvas gets a row for each of its digits, so that only the name tells them apart; its
    single-digit canvases teach boxing a digit at all (without them the model boxed a fixed cell)."""
    write_canvas_rows(folder, sizes, seed, "grounding", CHOICE_DIGIT_COUNTS, CELL_DIGIT_SIDES,
                      lambda image, digit, placed: {"img": image, "cap": digit.name, "patch_boxes": digit.ink_box,
                                                    "digit_boxes": [other.ink_box for other in placed]},
                      ask_every_digit_in_train=True, train_digit_counts=SINGLE_TO_CHOICE_DIGIT_COUNTS)


def build_digit_region(folder: Path, sizes: SplitSizes, seed: int) -> None:
    """img (2-3 different digits) + the bounding box of one digit's ink (region) -> that digit's name (label);
    `digits` lists every digit of the canvas, for the box-blind baseline. What made the model use the box
    (run_scripts/demo/README.md): a training row for every digit of a canvas, and ink boxes, whose location
    bins differ between the left and right (top and bottom) digits where the cells' bins coincide."""
    write_canvas_rows(folder, sizes, seed, "region", CHOICE_DIGIT_COUNTS, CELL_DIGIT_SIDES,
                      lambda image, digit, placed: {"img": image, "region": digit.ink_box, "label": digit.name,
                                                    "digits": [other.name for other in placed]},
                      ask_every_digit_in_train=True)


def build_digit_motion(folder: Path, sizes: SplitSizes, seed: int) -> None:
    """video (8 frames of one digit sliding 3 px per frame) -> left / right / up / down."""
    pools = digit_pools(seed)
    travel = VIDEO_STEP * (VIDEO_FRAMES - 1)
    for split in SPLITS:
        images, _ = pools[split]
        rng = rng_for(seed, "motion", split)
        rows = []
        for i in range(sizes.of(split)):
            direction = list(DIRECTIONS)[int(rng.integers(len(DIRECTIONS)))]
            dx, dy = DIRECTIONS[direction]
            side = int(rng.integers(VIDEO_DIGIT_SIDES[0], VIDEO_DIGIT_SIDES[1] + 1))
            low = [travel if d < 0 else 0 for d in (dx, dy)]
            high = [VIDEO_SIDE - side - (travel if d > 0 else 0) for d in (dx, dy)]
            x, y = (int(rng.integers(lo, hi + 1)) for lo, hi in zip(low, high))
            digit = render(images[int(rng.integers(len(images)))], side)
            frames = []
            for step in range(VIDEO_FRAMES):
                frame = Image.new("L", (VIDEO_SIDE, VIDEO_SIDE))
                frame.paste(digit, (x + dx * VIDEO_STEP * step, y + dy * VIDEO_STEP * step))
                frames.append(np.asarray(on_ramp(frame)))
            name = f"media/{split}_{i:05d}.mp4"
            write_mp4(frames, folder / name)
            rows.append({"video": name, "direction": direction})
        write_split(folder, split, rows)


def write_mp4(frames: list[np.ndarray], path: Path, fps: int = 8) -> None:
    """RGB frames -> an H.264 MP4 file (PyAV), the same bytes in every run: x264's macroblock-tree rate control
    made frames of these tiny videos differ between processes (decoded pixels by up to 11), so it is off."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        options = {"crf": "10", "preset": "veryfast", "x264-params": "mbtree=0"}
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())


def save(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
