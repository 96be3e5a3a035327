"""Text-to-image from scikit-learn's real handwritten digits: the caption "a handwritten seven" -> the scan itself
(8x8 grey, saved as PNG). The scans come from the same disjoint 60/10/30 pools as the other digit tasks, so no
test scan is seen in training, by the model or by the image tokenizer."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from .data_common import SPLITS, SplitSizes, write_split
from .data_digits import DIGIT_NAMES, digit_pools


def build_digit_images(folder: Path, sizes: SplitSizes, seed: int) -> None:
    """Rows {"text": caption, "img": scan path, "label": digit name}: the first scans of each split's pool."""
    pools = digit_pools(seed)
    for split in SPLITS:
        images, labels = pools[split]
        rows = []
        for index, (pixels, label) in enumerate(list(zip(images, labels))[:sizes.of(split)]):
            path = f"media/{split}_{index:05d}.png"
            (folder / "media").mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels, mode="L").save(folder / path)
            rows.append({"text": f"a handwritten {DIGIT_NAMES[label]}", "img": path, "label": DIGIT_NAMES[label]})
        write_split(folder, split, rows)
