"""Motion metrics (docs/metrics.md): "motion_accuracy" (a classifier trained on real windows recognises the
generated ones; R-precision at k; the classifier's own accuracy on real test windows as the ceiling),
"motion_fid" (Fréchet distance between classifier features of generated and real motion) and "motion_mpjpe"
(mean joint-position error of reconstructions, in the skeleton's units)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..contracts import Metric
from ..motion.errors import MotionError
from ..motion.loading import load_motion
from ..registry import register_metric
from .frechet import frechet_distance
from .metric_inputs import MetricInputError, check_rows, single_reference
from .motion_classifier import MotionClassifierConfig, labelled_windows, motion_classifier

MAX_RANK = 3  # R-precision reported at k = 2 .. min(3, classes - 1) (k = 1 is the accuracy)


def label_ranks(probabilities: np.ndarray, targets: list[int]) -> np.ndarray:
    """Per row, how many classes the classifier ranks above the row's target class (0: recognised); ties count
    against the target. R-precision at k is the share of ranks below k."""
    target = probabilities[np.arange(len(targets)), targets]
    return (probabilities >= target[:, None]).sum(axis=1) - 1


class _ClassifierMetric(Metric):
    def __init__(self, cfg: Optional[MotionClassifierConfig] = None):
        self.cfg = cfg or MotionClassifierConfig()

    def windows(self, trained, values: list, what: str) -> list:
        return [trained.window_of(value, f'metric "{self.registered_name}": the {what} of row {row}')
                for row, value in enumerate(values)]


@register_metric("motion_accuracy", dataclass=MotionClassifierConfig)
class MotionAccuracy(_ClassifierMetric):
    """Predictions: generated motions; references: each row's class label (the prompt's class)."""

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        check_rows(self.registered_name, predictions, references)
        trained = motion_classifier(self.cfg)
        labels = [str(single_reference(self.registered_name, row, ref)) for row, ref in enumerate(references)]
        unknown = sorted(set(labels) - set(trained.labels))
        if unknown:
            raise MetricInputError(f'metric "{self.registered_name}": labels {unknown} are not classes of the motion '
                                   f"classifier ({trained.labels})")
        probabilities = trained.probabilities(self.windows(trained, predictions, "prediction")).numpy()
        ranks = label_ranks(probabilities, [trained.labels.index(label) for label in labels])
        scores = {"motion_accuracy": float(np.mean(ranks == 0))}
        for k in range(2, min(MAX_RANK, len(trained.labels) - 1) + 1):
            scores[f"motion_r_precision@{k}"] = float(np.mean(ranks < k))
        if trained.ceiling is not None:
            scores["motion_classifier_ceiling"] = trained.ceiling
        scores["chance"] = 1 / len(trained.labels)
        return scores


@register_metric("motion_fid", dataclass=MotionClassifierConfig)
class MotionFid(_ClassifierMetric):
    """Predictions: generated motions; references: real motions (any loadable value). Lower is better;
    "motion_fid_real" is the distance between the classifier's real test and training windows, for scale."""

    higher_is_better = False

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        check_rows(self.registered_name, predictions, references)
        trained = motion_classifier(self.cfg)
        real = [single_reference(self.registered_name, row, ref) for row, ref in enumerate(references)]
        generated = trained.embed(self.windows(trained, predictions, "prediction"))
        scores = {"motion_fid": frechet_distance(generated, trained.embed(self.windows(trained, real, "reference")))}
        if self.cfg.classifier_test is not None:
            train_windows, _ = labelled_windows(self.cfg.classifier_train, self.cfg, "train")
            test_windows, _ = labelled_windows(self.cfg.classifier_test, self.cfg, "test")
            scores["motion_fid_real"] = frechet_distance(trained.embed(test_windows), trained.embed(train_windows))
        return scores


@register_metric("motion_mpjpe")
class MotionMpjpe(Metric):
    """Mean per-joint position error between reconstructed and original motions (same skeleton, rate and frame
    count), over every joint and end site: global, and with each frame's root moved onto the original's."""

    higher_is_better = False

    def compute(self, predictions: list, references: list) -> dict[str, float]:
        check_rows("motion_mpjpe", predictions, references)
        errors, relative = [], []
        for row, (prediction, reference) in enumerate(zip(predictions, references)):
            where = f'metric "motion_mpjpe", row {row}'
            try:
                original = load_motion(single_reference("motion_mpjpe", row, reference))
                rebuilt = load_motion(prediction, skeleton=original.skeleton, array_fps=original.fps)
                original.skeleton.check_matches(rebuilt.skeleton, rebuilt.source, "the reference's skeleton")
            except MotionError as err:
                raise MetricInputError(f"{where}: {err}") from None
            if rebuilt.num_frames != original.num_frames or rebuilt.fps != original.fps:
                raise MetricInputError(f"{where}: {rebuilt.num_frames} frames at {rebuilt.fps:g} fps against "
                                       f"{original.num_frames} at {original.fps:g}; expected the same frames")
            gap = rebuilt.joint_positions() - original.joint_positions()
            errors.append(np.linalg.norm(gap, axis=-1).mean())
            relative.append(np.linalg.norm(gap - gap[:, :1], axis=-1).mean())
        return {"motion_mpjpe": float(np.mean(errors)), "motion_mpjpe_root_relative": float(np.mean(relative))}
