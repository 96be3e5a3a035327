"""Metrics of generated images (issue 21): the judge trained on real scans recognises real held-out scans and
not noise, the Fréchet distance puts real scans closer to real scans than noise, and PSNR is exact."""
import math

import numpy as np
import pytest
from conftest import text_to_image_rows
from PIL import Image

from ofasys_fs.metrics.frechet import frechet_distance
from ofasys_fs.metrics.metric_inputs import MetricInputError
from ofasys_fs.registry import build_metric


@pytest.fixture(scope="module")
def judge_options():
    train, held_out = text_to_image_rows()
    return {"train_data": train, "test_data": held_out}


def noise(count: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), mode="L") for _ in range(count)]


def test_classifier_accuracy_recognises_real_scans_and_not_noise(judge_options):
    metric = build_metric({"name": "classifier_accuracy", **judge_options})
    held_out = text_to_image_rows()[1][:60]
    labels = [row["label"] for row in held_out]
    real = metric.compute([row["img"] for row in held_out], labels)
    assert real["classifier_accuracy"] >= 0.9 and real["real_accuracy"] >= 0.9 and real["chance"] == 0.25
    wrong = metric.compute([row["img"] for row in held_out], labels[1:] + labels[:1])
    assert wrong["classifier_accuracy"] < 0.5  # the labels of other scans
    with pytest.warns(UserWarning, match="reference labels \\['nine'\\] are not among the classes"):
        assert metric.compute([held_out[0]["img"]], ["nine"])["classifier_accuracy"] == 0.0
    with pytest.raises(MetricInputError, match="the prediction of row 1 is None"):
        metric.compute([held_out[0]["img"], None], labels[:2])


def test_frechet_distance_is_small_for_real_scans_and_large_for_noise(judge_options):
    metric = build_metric({"name": "frechet_distance", **judge_options})
    assert type(metric).higher_is_better is False
    held_out = text_to_image_rows()[1]
    references = [row["img"] for row in held_out[:100]]
    real = metric.compute([row["img"] for row in held_out[100:200]], references)
    noisy = metric.compute(noise(100), references)
    assert real["frechet_distance"] < 0.5 * noisy["frechet_distance"]
    assert real["real_frechet_distance"] < 0.5 * noisy["frechet_distance"]
    features = np.random.default_rng(1).normal(size=(500, 3))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(features, features + 2.0) == pytest.approx(12.0, rel=1e-6)  # |mu1 - mu2|^2 = 3 * 2^2


def test_psnr_is_exact():
    image = Image.fromarray(np.full((8, 8), 100, dtype=np.uint8), mode="L")
    brighter = Image.fromarray(np.full((8, 8), 151, dtype=np.uint8), mode="L")
    metric = build_metric("psnr")
    assert metric.compute([image], [image])["psnr"] == math.inf
    assert metric.compute([image], [brighter])["psnr"] == pytest.approx(10 * math.log10(1 / (51 / 255) ** 2))
    with pytest.raises(MetricInputError, match="row 0: expected images"):
        metric.compute(["not an image"], [image])
