"""The motion classifier that judges generated motion: a small 1-D convolutional network trained on real labelled
windows (motion_6d features, normalised with statistics of its own training windows). Its accuracy on held-out
real windows is the ceiling a generator can reach; its pooled features feed the Fréchet distance.

Trained classifiers are kept per process, and in `cache_dir` when given, keyed by a hash of their training
windows and settings, so that every metric of a run (and later runs) scores with the same classifier."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..checkpoint import atomic_write
from ..data.rows import as_row_source
from ..motion.clip import Motion
from ..motion.errors import MotionError
from ..motion.loading import load_motion
from ..motion.statistics import MotionStatistics, window_features
from ..options import at_least, option, positive
from .metric_inputs import MetricInputError

KERNEL = 5
# keeps the gradients of confidently classified windows away from float32 denormals, which slow CPUs tenfold
LABEL_SMOOTHING = 0.1
BATCH = 32
_TRAINED: dict[str, "TrainedMotionClassifier"] = {}


@dataclasses.dataclass
class MotionClassifierConfig:
    """Where the real labelled clips come from and how the classifier sees them."""

    classifier_train: Any = option(None, "real labelled clips to train on: a .jsonl/.tsv/.parquet file, shard "
                                         "folder or list of rows with a motion and a label column")
    classifier_test: Any = option(None, "held-out real clips (same form): the classifier's accuracy on them is "
                                        "reported as the ceiling")
    motion_column: str = option("motion", "column of the clips (any value load_motion reads)")
    label_column: str = option("label", "column of the class labels")
    fps: float = option(30.0, "clips are resampled to this rate", check=positive)
    window: int = option(32, "frames per classifier window", check=at_least(2))
    stride: int = option(8, "frames between consecutive windows cut from one clip", check=at_least(1))
    width: int = option(64, "channels of the convolutions (the feature size)", check=at_least(1))
    steps: int = option(150, "training steps (Adam, batches of BATCH windows)", check=at_least(1))
    seed: int = option(0, "seed of the classifier's initialisation and batches")
    cache_dir: Optional[str] = option(None, "folder to keep trained classifiers in (None: this process only)")


class MotionClassifier(nn.Module):
    """Normalised features [B, T, D] -> a per-frame projection, a convolution over time, ReLU -> mean over time
    (the features) -> class logits."""

    def __init__(self, feature_dim: int, num_classes: int, width: int):
        super().__init__()
        self.frame = nn.Linear(feature_dim, width)
        self.conv = nn.Conv1d(width, width, KERNEL, padding=KERNEL // 2)
        self.head = nn.Linear(width, num_classes)

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.frame(frames)).transpose(1, 2)
        return torch.relu(self.conv(hidden)).mean(dim=2)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(frames))


@dataclasses.dataclass
class TrainedMotionClassifier:
    model: MotionClassifier
    labels: list[str]
    statistics: MotionStatistics
    cfg: MotionClassifierConfig
    ceiling: Optional[float] = None  # accuracy on the held-out real windows

    def window_of(self, value: Any, where: str, base_dir: Optional[str] = None) -> Motion:
        """The centred window of `cfg.window` frames of any motion value, on the training skeleton."""
        try:
            motion = load_motion(value, base_dir, self.statistics.skeleton, self.cfg.fps)
            self.statistics.check(motion)
        except MotionError as err:
            raise MetricInputError(f"{where}: {err}") from None
        motion = motion.resampled(self.cfg.fps)
        if motion.num_frames < self.cfg.window:
            raise MetricInputError(f"{where}: {motion.source} has {motion.num_frames} frames at {self.cfg.fps:g} "
                                   f"fps; the motion classifier needs at least its window of {self.cfg.window}")
        start = (motion.num_frames - self.cfg.window) // 2
        return motion.frames(start, start + self.cfg.window)

    def inputs(self, windows: Sequence[Motion]) -> torch.Tensor:
        return torch.tensor(np.stack([self.statistics.normalise(window_features(w)) for w in windows]),
                            dtype=torch.float32)

    @torch.no_grad()
    def probabilities(self, windows: Sequence[Motion]) -> torch.Tensor:
        return self.model.eval()(self.inputs(windows)).softmax(dim=-1)

    @torch.no_grad()
    def embed(self, windows: Sequence[Motion]) -> np.ndarray:
        """The pooled features [N, width] (float64) of windows."""
        return self.model.eval().features(self.inputs(windows)).double().numpy()

    def predict(self, windows: Sequence[Motion]) -> list[str]:
        return [self.labels[i] for i in self.probabilities(windows).argmax(dim=-1).tolist()]

    def accuracy(self, windows: Sequence[Motion], labels: Sequence[str]) -> float:
        return float(np.mean([p == str(label) for p, label in zip(self.predict(windows), labels)]))


def labelled_windows(rows_source: Any, cfg: MotionClassifierConfig, what: str) -> tuple[list[Motion], list[str]]:
    """Every window (cfg.window frames, cfg.stride apart) of every row's clip, with the row's label."""
    rows = as_row_source(rows_source, "train")
    windows, labels, skeleton = [], [], None
    for index in range(len(rows)):
        row = rows[index]
        where = f"motion classifier {what} data, row {index}"
        for column in (cfg.motion_column, cfg.label_column):
            if row.get(column) is None:
                raise MetricInputError(f"{where}: no {column!r} column (the row has {sorted(row)})")
        try:
            motion = load_motion(row[cfg.motion_column], rows.base_dir, skeleton, cfg.fps).resampled(cfg.fps)
            skeleton = skeleton or motion.skeleton
            skeleton.check_matches(motion.skeleton, motion.source, "the first clip's skeleton")
        except MotionError as err:
            raise MetricInputError(f"{where}: {err}") from None
        cut = list(motion.windows(cfg.window, cfg.stride))
        if not cut:
            raise MetricInputError(f"{where}: {motion.source} has {motion.num_frames} frames at {cfg.fps:g} fps, "
                                   f"fewer than one classifier window of {cfg.window}")
        windows += cut
        labels += [str(row[cfg.label_column])] * len(cut)
    if not windows:
        raise MetricInputError(f"motion classifier {what} data has no rows")
    return windows, labels


def motion_classifier(cfg: MotionClassifierConfig) -> TrainedMotionClassifier:
    """The classifier for cfg's data: from this process, from cfg.cache_dir, or trained now (and kept)."""
    if cfg.classifier_train is None:
        raise MetricInputError("the motion metrics need real labelled clips to train their classifier: set "
                               "classifier_train (and classifier_test for the ceiling)")
    windows, labels = labelled_windows(cfg.classifier_train, cfg, "train")
    statistics = MotionStatistics.fit(windows)
    key = _key(cfg, windows, labels)
    if key not in _TRAINED:
        path = os.path.join(cfg.cache_dir, f"motion_classifier_{key[:20]}.pt") if cfg.cache_dir else None
        trained = _load(path, cfg, statistics) if path and os.path.exists(path) else None
        if trained is None:
            trained = _train(windows, labels, statistics, cfg)
            if cfg.classifier_test is not None:
                test_windows, test_labels = labelled_windows(cfg.classifier_test, cfg, "test")
                trained.ceiling = trained.accuracy(test_windows, test_labels)
            if path:
                _save(path, trained)
        _TRAINED[key] = trained
    return _TRAINED[key]


def _key(cfg: MotionClassifierConfig, windows: list[Motion], labels: list[str]) -> str:
    settings = {k: v for k, v in dataclasses.asdict(cfg).items()
                if k not in ("cache_dir", "classifier_train", "classifier_test")}
    digest = hashlib.sha256(json.dumps([settings, labels], sort_keys=True).encode())
    for window in windows:
        digest.update(np.ascontiguousarray(window_features(window)).tobytes())
    digest.update(json.dumps(_test_identity(cfg.classifier_test), sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _test_identity(source: Any) -> Any:
    """What the ceiling depends on: the test rows as given (a path with its size and modification time)."""
    if isinstance(source, (str, os.PathLike)) and os.path.exists(source):
        stat = os.stat(source)
        return [os.fspath(source), stat.st_size, stat.st_mtime_ns]
    return source


def _train(windows: list[Motion], labels: list[str], statistics: MotionStatistics,
           cfg: MotionClassifierConfig) -> TrainedMotionClassifier:
    classes = sorted(set(labels))
    generator = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = MotionClassifier(statistics.mean.size, len(classes), cfg.width)
    trained = TrainedMotionClassifier(model, classes, statistics, cfg)
    inputs = trained.inputs(windows)
    targets = torch.tensor([classes.index(label) for label in labels])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(cfg.steps):
        batch = torch.randint(len(inputs), (min(BATCH, len(inputs)),), generator=generator)
        loss = nn.functional.cross_entropy(model(inputs[batch]), targets[batch], label_smoothing=LABEL_SMOOTHING)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return trained


def _save(path: str, trained: TrainedMotionClassifier) -> None:
    state = {"model": trained.model.state_dict(), "labels": trained.labels, "ceiling": trained.ceiling}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, lambda file: file.write(buffer.getvalue()))


def _load(path: str, cfg: MotionClassifierConfig, statistics: MotionStatistics) -> TrainedMotionClassifier:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = MotionClassifier(statistics.mean.size, len(state["labels"]), cfg.width)
    model.load_state_dict(state["model"])
    return TrainedMotionClassifier(model, list(state["labels"]), statistics, cfg, state["ceiling"])
