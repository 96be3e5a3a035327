"""The report of an IMAGE output (text_to_image): the ceilings of the classifier that judges it (the real test
scans, and the image tokenizer's reconstructions of them, the best any generated codes can do), the Fréchet
distance of the generated images next to its baseline and ceiling, the decoding variants, and a picture of
generated digits per class."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from ofasys_fs.image_tokenizers.files import load_image_tokenizer
from ofasys_fs.image_tokenizers.images import image_grid, image_tensor, psnr, reconstruct, to_pil
from ofasys_fs.registry import build_metric

from .baselines import rule_predictions
from .data_digits import DIGIT_NAMES
from .demo_tasks import DemoTask, predictions_file, target_column

SAMPLES_PER_CLASS = 8
TOKENIZER_FILE = "image_tokenizer.pt"  # in the demo's output folder


def with_absolute(rows: list[dict], folder: Path, column: str) -> list[dict]:
    """The rows with their media paths in `column` made absolute (they are relative to the data file's folder; other
    values, such as motion spans naming their clip by an absolute path, stay)."""
    return [{**row, column: str(folder / row[column])} if isinstance(row[column], str) else row for row in rows]


def generated_files(outputs: list[dict], folder: Path) -> list[str]:
    return [str(folder / output["file"]) for output in outputs]


def image_outputs(out: Path, task: DemoTask, outputs: list[dict], train_rows: list[dict], test_rows: list[dict],
                  folder: Path) -> tuple[str, Path]:
    """(a note for the report, the picture of generated samples per class)."""
    column, labels = target_column(task), [row[task.references] for row in test_rows]
    options = task.metric_options(train_rows, test_rows)
    accuracy, distance = (build_metric({"name": name, **options})
                          for name in ("classifier_accuracy", "frechet_distance"))
    tokenizer = load_image_tokenizer(str(out / TOKENIZER_FILE))
    real = torch.stack([image_tensor(row[column], tokenizer.image_size, tokenizer.channels) for row in test_rows])
    reconstructed = reconstruct(tokenizer, real)
    rebuilt = [to_pil(image) for image in reconstructed]
    _, random_images = rule_predictions(task.baseline, column, train_rows, test_rows)
    truth = [row[column] for row in test_rows]
    scored = {"model": generated_files(outputs, folder), "random training image": random_images,
              "reconstructions": rebuilt}
    distances = {name: distance.compute(images, truth)["frechet_distance"] for name, images in scored.items()}
    ceiling = accuracy.compute(rebuilt, labels)
    variants = []
    for name, path in variant_files(out, task):
        images = generated_files(read_lines(path), path.parent)
        variants.append(f"{name}: {task.metric} {accuracy.compute(images, labels)[task.metric]:.3f}, Fréchet "
                        f"distance {distance.compute(images, truth)['frechet_distance']:.2f}")
    note = (f"{task.name}: the judge reads the real test scans at {ceiling['real_accuracy']:.3f}; the tokenizer's "
            f"reconstructions of them (the ceiling: {psnr(reconstructed, real):.1f} dB) "
            f"at {ceiling[task.metric]:.3f}. Fréchet distance to the real test scans (lower is better): "
            + ", ".join(f"{name} {value:.2f}" for name, value in distances.items())
            + (f". Other decoding: {'; '.join(variants)}" if variants else ""))
    return note, samples_picture(out / f"{task.name}_samples.png", outputs, test_rows, task, folder)


def variant_files(out: Path, task: DemoTask) -> list[tuple[str, Path]]:
    return [(name, predictions_file(out, f"{task.name}_{name}")) for name, _ in task.variants]


def read_lines(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return sorted((json.loads(line) for line in handle), key=lambda output: output["id"])


def samples_picture(path: Path, outputs: list[dict], test_rows: list[dict], task: DemoTask, folder: Path) -> Path:
    """One row per class: a real test scan, then the images generated for the first test captions of that class."""
    by_class: dict[str, list] = {}
    for output, row in zip(outputs, test_rows):
        by_class.setdefault(row[task.references], [row[target_column(task)]]).append(folder / output["file"])
    cells = []
    for label in sorted(by_class, key=DIGIT_NAMES.index):
        shown = by_class[label][:SAMPLES_PER_CLASS + 1]
        cells += [Image.open(item).convert("L") for item in shown]
        cells += [Image.new("L", cells[-1].size, 255)] * (SAMPLES_PER_CLASS + 1 - len(shown))
    image_grid(cells, columns=SAMPLES_PER_CLASS + 1, scale=4).save(path)
    return path
