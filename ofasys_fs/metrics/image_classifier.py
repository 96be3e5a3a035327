"""The judge of generated images: a small CNN trained on real labelled images, its accuracy on real held-out
images (the ceiling generated images are compared with) and its penultimate features (for the Fréchet
distance). Trained once per data and settings, kept in the process and, with `cache_dir`, on disk."""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import atomic_write, load_torch_file
from ..data.rows import as_row_source
from ..errors import ConfigError, DataError
from ..image_tokenizers.images import image_tensor
from ..instruction import column_value
from ..media import MediaError, load_image

FEATURES = 128
BATCH = 64
_TRAINED: dict[str, "Judge"] = {}


@dataclasses.dataclass
class ClassifierConfig:
    """Where the real images are and how the judge is trained (options of classifier_accuracy and
    frechet_distance)."""

    train_data: Any = None  # real training images: rows (list of dicts), a file or a folder
    test_data: Any = None  # real held-out images: the judge's own accuracy, reported as the ceiling
    image_column: str = "img"
    label_column: str = "label"
    image_size: Optional[int] = None  # default: the first training image's larger side
    channels: Optional[int] = None  # default: 1 when every training image is grey
    epochs: int = 10
    seed: int = 1
    cache_dir: Optional[str] = None  # also keep the trained judge here (default: in this process only)


class ImageClassifier(nn.Module):
    """Two convolution stages (32, 64 channels, each halving), a 128-wide feature layer and the class layer."""

    def __init__(self, size: int, channels: int, classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(64 * (size // 4) ** 2, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


@dataclasses.dataclass
class Judge:
    """A trained classifier with its class names, input geometry and accuracy on the real test images."""

    model: ImageClassifier
    classes: list
    size: int
    channels: int
    real_accuracy: Optional[float]
    training_images: torch.Tensor  # the real images it was trained on (cropped as its inputs)

    def tensors(self, images: list, what: str) -> torch.Tensor:
        """Images in any form `load_image` reads -> [N, channels, size, size]; errors name the row."""
        batch = []
        for row, image in enumerate(images):
            if image is None:
                raise DataError(f"{what}: row {row} has no image (nothing was generated)")
            try:
                batch.append(image_tensor(image, self.size, self.channels))
            except MediaError as err:
                raise DataError(f"{what}, row {row}: {err.reason}") from err
        return crop(torch.stack(batch))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> list:
        logits = torch.cat([self.model(images[i:i + 256]) for i in range(0, len(images), 256)])
        return [self.classes[index] for index in logits.argmax(dim=1).tolist()]

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> np.ndarray:
        return torch.cat([self.model.body(images[i:i + 256]) for i in range(0, len(images), 256)]).double().numpy()


def labelled_images(source: Any, cfg: ClassifierConfig, what: str, size: Optional[int] = None,
                    channels: Optional[int] = None) -> tuple[torch.Tensor, list, int, int]:
    """(images, labels as strings, size, channels) of a row source's image and label columns."""
    if source is None:
        raise ConfigError(f"{what}: give the real labelled images (train_data=rows or a file with columns "
                          f"{cfg.image_column!r} and {cfg.label_column!r})")
    rows = as_row_source(source, "train")
    values, labels = [], []
    for index in range(len(rows)):
        row = rows[index]
        image, label = column_value(row, cfg.image_column), column_value(row, cfg.label_column)
        if image is None or label is None:
            raise DataError(f"{what}: {rows.where(index)} lacks column {cfg.image_column!r} or {cfg.label_column!r} "
                            f"(row keys: {sorted(row)})")
        values.append(image)
        labels.append(str(label))
    if not values:
        raise DataError(f"{what}: {rows.description} has no rows")
    if size is None or channels is None:
        first = load_image(values[0], rows.base_dir)
        size = size or max(first.size)
        grey = all(is_grey(load_image(value, rows.base_dir)) for value in values[:64])
        channels = channels or (1 if grey else 3)
    try:
        images = torch.stack([image_tensor(value, size, channels, rows.base_dir) for value in values])
    except MediaError as err:
        raise DataError(f"{what}: {err}") from err
    return images, labels, size, channels


def is_grey(image) -> bool:
    array = np.asarray(image.convert("RGB"), dtype=np.int16)
    return bool((array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all())


def trained_judge(cfg: ClassifierConfig, what: str) -> Judge:
    """The judge for these real images and settings: trained on first use, then kept (and cached on disk)."""
    images, labels, size, channels = labelled_images(cfg.train_data, cfg, what, cfg.image_size, cfg.channels)
    if size < 4:
        raise ConfigError(f"{what}: images of {size} px are too small for the classifier (at least 4)")
    key = judge_key(images, labels, cfg)
    if key in _TRAINED:
        return _TRAINED[key]
    classes = sorted(set(labels))
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        model = ImageClassifier(size - size % 4, channels, len(classes))
    cached = os.path.join(cfg.cache_dir, f"image-classifier-{key[:16]}.pt") if cfg.cache_dir else None
    if cached and os.path.exists(cached):
        stored = load_torch_file(cached, "image classifier cache")
        model.load_state_dict(stored["weights"])
        real_accuracy = stored["real_accuracy"]
    else:
        fit(model, crop(images), torch.tensor([classes.index(label) for label in labels]), cfg)
        real_accuracy = None
    judge = Judge(model.eval(), classes, size, channels, real_accuracy, crop(images))
    if judge.real_accuracy is None and cfg.test_data is not None:
        test_images, test_labels, _, _ = labelled_images(cfg.test_data, cfg, what, size, channels)
        predicted = judge.predict(crop(test_images))
        judge.real_accuracy = sum(p == t for p, t in zip(predicted, test_labels)) / len(test_labels)
    if cached and not os.path.exists(cached):
        state = {"weights": model.state_dict(), "real_accuracy": judge.real_accuracy}
        atomic_write(cached, lambda handle: torch.save(state, handle))
    _TRAINED[key] = judge
    return judge


def crop(images: torch.Tensor) -> torch.Tensor:
    """Images cropped to a side divisible by 4 (the classifier halves twice)."""
    side = images.size(-1) - images.size(-1) % 4
    return images[..., :side, :side]


def fit(model: ImageClassifier, images: torch.Tensor, targets: torch.Tensor, cfg: ClassifierConfig) -> None:
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), BATCH):
            rows = order[start:start + BATCH]
            loss = F.cross_entropy(model(images[rows]), targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()


def judge_key(images: torch.Tensor, labels: list, cfg: ClassifierConfig) -> str:
    digest = hashlib.sha256(images.numpy().tobytes())
    digest.update("\x1f".join(labels).encode("utf-8"))
    digest.update(repr((cfg.epochs, cfg.seed, images.shape)).encode("utf-8"))
    return digest.hexdigest()
