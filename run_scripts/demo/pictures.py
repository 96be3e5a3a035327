"""The demo's pictures, drawn with PIL (no plotting dependency): training curves per task from
train_log.jsonl, grounding predictions (predicted and true boxes) drawn on their test images, and
spectrograms of generated against reference speech."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ofasys_fs.media import load_audio
from ofasys_fs.mel import MelSettings, log_mel

PANEL = (360, 240)  # width, height of one curve panel
MARGIN = dict(left=44, right=10, top=24, bottom=30)
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44))  # series in legend order
TRUE_BOX, PREDICTED_BOX = (0, 210, 255), (255, 0, 255)  # cyan, magenta: visible on the colour ramp
ZOOM = 4  # grounding canvases are 48 px: drawn 4x larger


def font(size: int = 11) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def read_curves(log_path: Path, metrics: dict[str, str]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """task -> {"train loss", "valid loss", "valid METRIC": [(update, value), ...]} from the trainer's JSON
    lines (`metrics`: task -> the name of its metric in the valid records)."""
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    with open(log_path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            for task, stats in record.get("tasks", {}).items():
                series = curves.setdefault(task, {})
                names = {"loss": f"{record['split']} loss"}
                if record["split"] == "valid" and task in metrics:
                    names[metrics[task]] = f"valid {metrics[task]}"
                for key, name in names.items():
                    if isinstance(stats.get(key), (int, float)) and math.isfinite(stats[key]):
                        series.setdefault(name, []).append((record["update"], stats[key]))
    return curves


def curve_panel(title: str, series: dict[str, list[tuple[int, float]]], max_y: Optional[float] = None,
                x_label: str = "updates") -> Image.Image:
    """One line chart of `series` against updates (or `x_label`), with a legend; the y axis runs from 0 to
    max_y (default: a bit above the largest value)."""
    image = Image.new("RGB", PANEL, "white")
    draw = ImageDraw.Draw(image)
    points = [point for values in series.values() for point in values]
    left, top = MARGIN["left"], MARGIN["top"]
    right, bottom = PANEL[0] - MARGIN["right"], PANEL[1] - MARGIN["bottom"]
    draw.text((left, 4), title, fill="black", font=font(13))
    draw.rectangle([left, top, right, bottom], outline=(120, 120, 120))
    if not points:
        draw.text((left + 8, top + 8), "no log records", fill="black", font=font())
        return image
    max_x = max(x for x, _ in points) or 1
    max_y = max_y or max(y for _, y in points) * 1.05 or 1.0

    def at(x: float, y: float) -> tuple[float, float]:
        return left + (right - left) * x / max_x, bottom - (bottom - top) * y / max_y

    for fraction in (0.0, 0.5, 1.0):
        _, y = at(0, max_y * fraction)
        draw.line([left - 3, y, left, y], fill="black")
        draw.text((4, y - 6), f"{max_y * fraction:.2f}", fill="black", font=font(10))
    draw.text((left, bottom + 4), "0", fill="black", font=font(10))
    draw.text((right - 60, bottom + 4), f"{max_x:g} {x_label}", fill="black", font=font(10))
    for row, (name, values) in enumerate(series.items()):
        colour = COLOURS[row % len(COLOURS)]
        if len(values) > 1:
            draw.line([at(x, y) for x, y in values], fill=colour, width=2)
        cx, cy = at(*values[-1])
        draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=colour)
        draw.line([right - 110, top + 10 + 14 * row, right - 92, top + 10 + 14 * row], fill=colour, width=2)
        draw.text((right - 88, top + 4 + 14 * row), name, fill="black", font=font(10))
    return image


def draw_curves(log_path: Path, metrics: dict[str, str], folder: Path) -> list[Path]:
    """curves/<task>.png per task (loss; valid metric) and curves.png with every task; returns the paths."""
    curves = read_curves(log_path, metrics)
    folder.mkdir(parents=True, exist_ok=True)
    sheets, paths = [], []
    for task, metric in metrics.items():
        series = curves.get(task, {})
        losses = {name: values for name, values in series.items() if name.endswith(" loss")}
        scores = {name: values for name, values in series.items() if not name.endswith(" loss")}
        sheet = grid([curve_panel(f"{task}: loss (bits/token)", losses),
                      curve_panel(f"{task}: valid {metric}", scores, max_y=1.0)], columns=2)
        paths.append(folder / f"{task}.png")
        sheet.save(paths[-1], optimize=True)
        sheets.append(sheet)
    paths.append(folder.parent / "curves.png")
    grid(sheets, columns=2).save(paths[-1], optimize=True)
    return paths


def grid(images: Sequence[Image.Image], columns: int) -> Image.Image:
    width, height = images[0].size
    rows = math.ceil(len(images) / columns)
    sheet = Image.new("RGB", (width * min(columns, len(images)), height * rows), "white")
    for index, image in enumerate(images):
        sheet.paste(image, ((index % columns) * width, (index // columns) * height))
    return sheet


def draw_grounding(examples: Sequence[dict], path: Path, columns: int = 6) -> Path:
    """Each example {"image": path, "text", "true", "predicted", "iou"}: the image zoomed, the true box in
    cyan, the predicted box in magenta, the query and the IoU below."""
    tiles = []
    for example in examples:
        image = Image.open(example["image"]).convert("RGB")
        image = image.resize((image.width * ZOOM, image.height * ZOOM), Image.NEAREST)
        tile = Image.new("RGB", (image.width + 8, image.height + 34), "white")
        tile.paste(image, (4, 4))
        draw = ImageDraw.Draw(tile)
        for box, colour in ((example["true"], TRUE_BOX), (example["predicted"], PREDICTED_BOX)):
            x0, x1 = sorted((box[0], box[2]))  # an untrained model may put x1 before x0
            y0, y1 = sorted((box[1], box[3]))
            draw.rectangle([4 + v * ZOOM for v in (x0, y0, x1, y1)], outline=colour, width=2)
        draw.text((4, image.height + 6), f'"{example["text"]}"  IoU {example["iou"]:.2f}', fill="black", font=font())
        draw.text((4, image.height + 19), "cyan: true  magenta: predicted", fill=(90, 90, 90), font=font(9))
        tiles.append(tile)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(tiles, columns).save(path, optimize=True)
    return path


def spectrogram_tile(samples_path: Path, label: str, height: int = 80, zoom: int = 2) -> Image.Image:
    """A log-mel spectrogram (80 bins, 10 ms per column; low frequencies at the bottom, dark = loud) with a label."""
    mel = log_mel(load_audio(str(samples_path)), MelSettings()).numpy().T[::-1]
    low, high = np.percentile(mel, 5), mel.max()
    pixels = (255 * (1 - np.clip((mel - low) / max(high - low, 1e-6), 0, 1))).astype(np.uint8)
    image = Image.fromarray(pixels).resize((pixels.shape[1] * zoom, height * zoom), Image.NEAREST).convert("RGB")
    tile = Image.new("RGB", (max(image.width, 220) + 8, image.height + 22), "white")
    tile.paste(image, (4, 18))
    ImageDraw.Draw(tile).text((4, 3), label, fill="black", font=font())
    return tile


def draw_spectrograms(examples: Sequence[dict], path: Path) -> Path:
    """Each example {"text", "reference", "generated"} (audio paths): the reference and the generated
    spectrogram side by side, one example per row."""
    tiles = []
    for example in examples:
        tiles.append(spectrogram_tile(example["reference"], f'reference: "{example["text"]}"'))
        tiles.append(spectrogram_tile(example["generated"], f'generated: "{example["text"]}" heard "'
                                                            f'{example["heard"]}"'))
    width, height = max(tile.width for tile in tiles), max(tile.height for tile in tiles)
    sheet = Image.new("RGB", (2 * width, height * len(examples)), "white")
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % 2) * width, (index // 2) * height))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return path
