"""Metrics of generated images (docs/image_generation.md, "Metrics"): "classifier_accuracy" (does a classifier
trained on real images recognise the requested class?), "frechet_distance" (on that classifier's features,
generated vs real images) and "psnr" (generated vs reference pixels, e.g. image infilling)."""
from __future__ import annotations

import dataclasses
import warnings

import torch

from ..contracts import Metric
from ..image_tokenizers.images import image_tensor, psnr
from ..media import MediaError
from ..registry import register_metric
from .frechet import frechet_distance
from .image_classifier import ClassifierConfig, trained_judge
from .metric_inputs import MetricInputError, check_rows, single_reference


@register_metric("classifier_accuracy", dataclass=ClassifierConfig)
class ClassifierAccuracy(Metric):
    """Share of generated images that the judge (trained on `train_data`) assigns the row's reference label;
    also `real_accuracy`, the judge's accuracy on the real `test_data` (the ceiling), and `chance`."""

    def __init__(self, cfg: ClassifierConfig):
        self.cfg = cfg

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        check_rows(self.registered_name, predictions, references)
        judge = trained_judge(self.cfg, f'metric "{self.registered_name}"')
        labels = [str(single_reference(self.registered_name, row, ref)) for row, ref in enumerate(references)]
        unknown = sorted(set(labels) - set(judge.classes))
        if unknown:  # the judge cannot name them: such rows count as misses
            warnings.warn(f'metric "{self.registered_name}": reference labels {unknown[:5]} are not among the classes '
                          f"of its training images {judge.classes[:10]}; their rows count as misses", stacklevel=2)
        predicted = judge.predict(judge.tensors(predictions, f'metric "{self.registered_name}"'))
        values = {self.registered_name: sum(p == t for p, t in zip(predicted, labels)) / len(labels)}
        if judge.real_accuracy is not None:
            values["real_accuracy"] = judge.real_accuracy
        values["chance"] = 1 / len(judge.classes)
        return values


@register_metric("frechet_distance", dataclass=ClassifierConfig)
class FrechetDistance(Metric):
    """Fréchet distance between Gaussians fitted to the judge's features of the generated images and of the
    reference (real) images; `real_frechet_distance` is that of the real training images to the references (a
    floor from sampling alone). Lower is better; comparable only for the same judge and references."""

    higher_is_better = False

    def __init__(self, cfg: ClassifierConfig):
        self.cfg = cfg

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        check_rows(self.registered_name, predictions, references)
        what = f'metric "{self.registered_name}"'
        judge = trained_judge(self.cfg, what)
        real = [single_reference(self.registered_name, row, ref) for row, ref in enumerate(references)]
        reference_features = judge.features(judge.tensors(real, f"{what} (references)"))
        values = {self.registered_name: frechet_distance(judge.features(judge.tensors(predictions, what)), reference_features)}
        shown = torch.randperm(len(judge.training_images), generator=torch.Generator().manual_seed(self.cfg.seed))
        from_training = judge.features(judge.training_images[shown[:len(real)]])
        values["real_frechet_distance"] = frechet_distance(from_training, reference_features)
        return values


@dataclasses.dataclass
class PSNRConfig:
    channels: int = 1  # compare in grey (1) or RGB (3)


@register_metric("psnr", dataclass=PSNRConfig)
class PeakSignalToNoise(Metric):
    """PSNR in dB of each generated image against its reference image (resized to the generated size), from the
    mean squared error over all rows (pixels in [0, 1])."""

    def __init__(self, cfg: PSNRConfig):
        self.cfg = cfg

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        check_rows(self.registered_name, predictions, references)
        generated, real = [], []
        for row, (prediction, reference) in enumerate(zip(predictions, references)):
            reference = single_reference(self.registered_name, row, reference)
            try:
                side = max(prediction.size)
                generated.append(image_tensor(prediction, side, self.cfg.channels))
                real.append(image_tensor(reference, side, self.cfg.channels))
            except (MediaError, AttributeError) as err:
                raise MetricInputError(f'metric "{self.registered_name}", row {row}: expected images, '
                                       f"got {err}") from err
        return {self.registered_name: psnr(torch.stack(generated), torch.stack(real))}

