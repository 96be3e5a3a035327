"""Motion metrics: a classifier trained on real CMU windows (its real held-out accuracy is the ceiling) scores
motion, a Fréchet distance on its features, the joint-position error of reconstructions; caching and bad input."""
from pathlib import Path

import numpy as np
import pytest
from motion_clips import BOXING, CLIMB, JUMPS, clip, needs_clips

from ofasys_fs.metrics import motion_classifier
from ofasys_fs.metrics.metric_inputs import MetricInputError
from ofasys_fs.metrics.frechet import frechet_distance
from ofasys_fs.metrics.motion import label_ranks
from ofasys_fs.motion import from_6d, load_motion, to_6d
from ofasys_fs.registry import build_metric

LABELS = {JUMPS: "jumping", CLIMB: "climbing"}


def rows(held_out: bool) -> list[dict]:
    """3 s blocks of the first 21 s of each clip; every third block is held out (as 1.2 s windows, 1 s apart)."""
    out = []
    for name, label in LABELS.items():
        for block in range(7):
            if (block % 3 == 2) == held_out:
                starts = [3 * block + offset for offset in (0, 1)] if held_out else [3 * block]
                length = 1.2 if held_out else 3
                out += [{"motion": {"path": clip(name), "start": s, "end": s + length}, "label": label} for s in starts]
    return out


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return {"classifier_train": rows(False), "classifier_test": rows(True), "window": 32, "stride": 8,
            "cache_dir": str(tmp_path_factory.mktemp("classifier"))}


@needs_clips
def test_classifier_recognises_real_held_out_windows_and_not_mislabelled_ones(settings):
    metric = build_metric({"name": "motion_accuracy", **settings})
    held_out = rows(True)
    real = metric.compute([r["motion"] for r in held_out], [r["label"] for r in held_out])
    assert real["motion_classifier_ceiling"] >= 0.9 and real["motion_accuracy"] >= 0.9 and real["chance"] == 0.5
    swapped = metric.compute([r["motion"] for r in held_out], [LABELS[CLIMB] if r["label"] == LABELS[JUMPS]
                                                               else LABELS[JUMPS] for r in held_out])
    assert swapped["motion_accuracy"] == pytest.approx(1 - real["motion_accuracy"])
    assert metric.higher_is_better


def test_label_ranks_give_accuracy_and_r_precision():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.6, 0.1, 0.3], [0.1, 0.1, 0.8]])
    ranks = label_ranks(probabilities, [0, 2, 1, 2])
    assert ranks.tolist() == [0, 1, 2, 0]  # R@1 = 2/4, R@2 = 3/4


@needs_clips
def test_trained_classifiers_are_cached_in_process_and_on_disk(settings):
    first = motion_classifier.motion_classifier(motion_classifier.MotionClassifierConfig(**settings))
    assert motion_classifier.motion_classifier(motion_classifier.MotionClassifierConfig(**settings)) is first
    files = sorted(path.name for path in Path(settings["cache_dir"]).iterdir())
    assert len(files) == 1 and files[0].startswith("motion_classifier_")
    motion_classifier._TRAINED.clear()
    reloaded = motion_classifier.motion_classifier(motion_classifier.MotionClassifierConfig(**settings))
    assert reloaded is not first and reloaded.ceiling == first.ceiling and reloaded.labels == first.labels
    windows = [reloaded.window_of(r["motion"], "row") for r in rows(True)]
    np.testing.assert_allclose(reloaded.embed(windows), first.embed(windows), atol=1e-6)


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 4))
    shifted = 2 * real + 3  # covariance 4 S: Tr(S + 4 S - 2 (S^1/2 4 S S^1/2)^1/2) = Tr(S)
    expected = np.sum((real.mean(0) + 3) ** 2) + np.trace(np.cov(real, rowvar=False))
    assert frechet_distance(real, shifted) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(real, real) == pytest.approx(0, abs=1e-9)


@needs_clips
def test_motion_fid_is_small_between_real_windows_of_a_class_and_large_across_classes(settings):
    metric = build_metric({"name": "motion_fid", **settings})
    assert not metric.higher_is_better
    jumps = [{"path": clip(JUMPS), "start": s, "end": s + 1.2} for s in np.arange(0, 20, 0.5)]
    climbs = [{"path": clip(CLIMB), "start": s, "end": s + 1.2} for s in np.arange(0, 20, 0.5)]
    same = metric.compute(jumps[::2], jumps[1::2])
    across = metric.compute(jumps[::2], climbs[1::2])
    assert same["motion_fid"] * 5 < across["motion_fid"] and same["motion_fid_real"] >= 0


@needs_clips
def test_mpjpe_of_reconstructions(tmp_path):
    original = load_motion({"path": clip(JUMPS), "start": 2, "end": 3})
    rebuilt = from_6d(to_6d(original), original.skeleton, original.fps)
    metric = build_metric("motion_mpjpe")
    assert metric.compute([rebuilt], [original])["motion_mpjpe"] < 1e-9
    shifted = from_6d(to_6d(original) + np.r_[1.0, 0, 0, np.zeros(to_6d(original).shape[1] - 3)], original.skeleton,
                      original.fps)
    scores = metric.compute([shifted], [original])
    assert scores["motion_mpjpe"] == pytest.approx(1.0) and scores["motion_mpjpe_root_relative"] < 1e-9
    with pytest.raises(MetricInputError, match=r"row 0: 60 frames at 120 fps against 120"):
        metric.compute([original.frames(0, 60)], [original])
    with pytest.raises(MetricInputError, match=r"row 0: .*Boxing_Toes.bvh': its skeleton"):
        metric.compute([{"path": clip(BOXING), "end": 1}], [original])


@needs_clips
def test_motion_metrics_refuse_unusable_input_clearly(settings):
    with pytest.raises(MetricInputError, match="need real labelled clips to train their classifier: set "
                                               "classifier_train"):
        build_metric("motion_accuracy").compute([{"path": clip(JUMPS)}], ["jumping"])
    metric = build_metric({"name": "motion_accuracy", **settings})
    with pytest.raises(MetricInputError, match=r'"motion_accuracy": the prediction of row 1: .*01_01.bvh\' has 15 '
                                               r"frames at 30 fps; the motion classifier needs at least its window "
                                               r"of 32"):
        metric.compute([{"path": clip(JUMPS), "end": 2}, {"path": clip(JUMPS), "end": 0.5}], ["jumping"] * 2)
    with pytest.raises(MetricInputError, match=r"labels \['boxing'\] are not classes of the motion classifier"):
        metric.compute([{"path": clip(JUMPS), "end": 2}], ["boxing"])
