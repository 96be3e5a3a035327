"""The Fréchet distance between two feature sets, shared by the metrics of generated media (motion_fid,
frechet_distance of images): each judged on the features of a classifier trained on real data."""
from __future__ import annotations

import numpy as np

from .metric_inputs import MetricInputError


def frechet_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, F]:
    |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), by symmetric eigendecompositions (no complex sqrtm)."""
    if len(first) < 2 or len(second) < 2:
        raise MetricInputError("a Fréchet distance needs at least 2 rows on each side")
    mean_gap = float(np.sum((first.mean(0) - second.mean(0)) ** 2))
    cov1, cov2 = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    values, vectors = np.linalg.eigh(cov1)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ cov2 @ root1), 0, None)).sum()
    return mean_gap + float(np.trace(cov1) + np.trace(cov2) - 2 * cross)
