"""Real images for the IMAGE-output tests: scikit-learn's handwritten digits (8x8 grey scans, UCI), as rows
{"text": "a handwritten seven", "img": uint8 array, "label": "seven"}, split by a seed into disjoint sets."""
import functools

import numpy as np
from sklearn.datasets import load_digits

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TOKENIZER = {"name": "fsq", "image_size": 8, "grid": 4, "levels": [5, 5, 5], "hidden": 32}  # 125 codes, 4x4 grid


@functools.lru_cache(maxsize=1)
def scans() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digit scans as uint8 [N, 8, 8] and their digits (read once per process)."""
    digits = load_digits()
    return (digits.images * 255 / 16).round().astype(np.uint8), digits.target


def digit_rows(classes=range(10)) -> list[dict]:
    """Every scan of the given digit classes, in scikit-learn's order."""
    images, targets = scans()
    return [{"text": f"a handwritten {NAMES[target]}", "img": image, "label": NAMES[target]}
            for image, target in zip(images, targets) if target in classes]


def split(rows: list, train_share: float = 0.7, seed: int = 0) -> tuple[list, list]:
    """(train, held-out) rows of a seeded permutation: no scan is in both."""
    order = np.random.default_rng(seed).permutation(len(rows))
    cut = int(len(rows) * train_share)
    return [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]


def shuffled_captions(rows: list, seed: int = 0) -> list:
    """The rows with their captions permuted (the control: captions carry no information about the image)."""
    captions = [row["text"] for row in rows]
    np.random.default_rng(seed).shuffle(captions)
    return [{**row, "text": caption} for row, caption in zip(rows, captions)]
