"""The demo's data and baselines: the rules the model must beat are the strongest ones the data allows."""
import collections
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from motion_clips import CLIPS_DIR, needs_clips

from ofasys_fs.motion import load_motion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run_scripts/ is not installed with the package

from run_scripts.demo.baselines import best_baseline, rule_predictions  # noqa: E402
from run_scripts.demo.data_common import SplitSizes, read_split  # noqa: E402
from run_scripts.demo.data_digits import build_digit_grounding  # noqa: E402
from run_scripts.demo.data_motion import DESCRIPTIONS, build_cmu_motion  # noqa: E402
from run_scripts.demo.data_vqa import balanced_questions  # noqa: E402
from run_scripts.demo.debian_package import DEFAULT_CACHE  # noqa: E402
from run_scripts.demo.demo_tasks import TASKS  # noqa: E402
from run_scripts.demo.report import box_landings  # noqa: E402

TRAIN = [{"q": "is it red?", "a": "no"}, {"q": "is it red?", "a": "no"}, {"q": "is it red?", "a": "yes"},
         {"q": "is it blue?", "a": "yes"}, {"q": "is it blue?", "a": "yes"}]


def test_majority_per_column_follows_the_wording_and_falls_back_to_the_global_majority():
    test = [{"q": "is it red?"}, {"q": "is it blue?"}, {"q": "is it green?"}]
    _, predictions = rule_predictions("majority_per:q", "a", TRAIN, test)
    assert predictions == ["no", "yes", "yes"]


def test_best_baseline_is_the_strongest_rule_on_the_test_rows():
    test = [{"q": "is it red?", "a": "no"}, {"q": "is it red?", "a": "no"}, {"q": "is it blue?", "a": "yes"}]
    name, values = best_baseline(("majority", "majority_per:q"), "accuracy", "a", TRAIN, test)
    assert name == "majority answer per q" and values["accuracy"] == pytest.approx(1.0)
    name, values = best_baseline(("majority",), "accuracy", "a", TRAIN, test)
    assert name == "majority answer 'yes'" and values["accuracy"] == pytest.approx(1 / 3)


def test_random_of_picks_one_of_the_rows_candidates():
    rows = [{"digits": ["one", "two"]}, {"digits": ["three", "four", "five"]}] * 20
    _, picks = rule_predictions("random_of:digits", "label", [], rows)
    assert all(pick in row["digits"] for pick, row in zip(picks, rows)) and len(set(picks)) == 5


def test_unknown_rule_is_named():
    with pytest.raises(ValueError, match="unknown baseline rule 'median'"):
        rule_predictions("median", "a", TRAIN, TRAIN)


def test_yes_no_answers_are_balanced_per_question_text():
    texts = ["is it red?"] * 10 + ["is it round?"] * 6 + ["what color?"] * 3
    answers = ["no"] * 8 + ["yes"] * 2 + ["yes"] * 5 + ["no"] + ["red", "red", "blue"]
    kept = balanced_questions(texts, answers, np.random.default_rng(0))
    counts = collections.Counter((texts[i], answers[i]) for i in kept)
    assert counts == {("is it red?", "no"): 2, ("is it red?", "yes"): 2, ("is it round?", "yes"): 1,
                      ("is it round?", "no"): 1, ("what color?", "red"): 2, ("what color?", "blue"): 1}


def test_grounding_asks_every_digit_of_a_training_canvas_and_tests_on_canvases_of_two_or_more(tmp_path):
    build_digit_grounding(tmp_path, SplitSizes(40, 8, 20), seed=1)
    by_canvas = collections.defaultdict(list)
    for row in read_split(tmp_path, "train"):
        assert row["patch_boxes"] in row["digit_boxes"] and 1 <= len(row["digit_boxes"]) <= 3
        by_canvas[row["img"]].append(row)
    complete = [rows for rows in by_canvas.values() if len(rows) == len(rows[0]["digit_boxes"])]
    assert len(complete) >= len(by_canvas) - 1  # only the last canvas may be cut short by the row count
    assert all(len({row["cap"] for row in rows}) == len(rows) for rows in by_canvas.values())
    test = read_split(tmp_path, "test")
    assert all(row["patch_boxes"] in row["digit_boxes"] and len(row["digit_boxes"]) >= 2 for row in test)
    assert len({row["img"] for row in test}) == len(test)  # one question per test canvas


def test_box_landings_count_named_other_and_no_digit():
    task = next(task for task in TASKS if task.name == "digit_grounding")
    left, right = [0, 0, 20, 24], [26, 0, 46, 24]
    rows = [{"patch_boxes": left, "digit_boxes": [left, right]}] * 3
    outputs = [{"box": [1, 0, 20, 24]}, {"box": [26, 1, 45, 24]}, {"box": [0, 30, 10, 40]}]
    assert box_landings(task, outputs, rows).endswith("1 land on the named digit, 1 on another digit of the canvas, "
                                                      "1 on no digit")


@needs_clips
@pytest.mark.parametrize("sizes", [SplitSizes(48, 8, 30), SplitSizes(8, 8, 8)], ids=["full", "smoke"])
def test_motion_rows_are_labelled_by_their_clip_and_held_out_windows_never_overlap_training_time(tmp_path, sizes):
    build_cmu_motion(tmp_path, sizes, seed=1, cache_dir=DEFAULT_CACHE)  # the clips are installed or cached
    rows = {split: read_split(tmp_path, split) for split in ("train", "valid", "test")}
    trained = collections.defaultdict(list)
    for split, split_rows in rows.items():
        assert len(split_rows) == sizes.of(split)
        clips = collections.Counter(Path(row["motion"]["path"]).name for row in split_rows)
        assert clips == {name: sizes.of(split) // 2 for name in DESCRIPTIONS}  # as many windows of each clip
        for row in split_rows:
            span = row["motion"]
            assert Path(span["path"]).parent == CLIPS_DIR and row["text"] == DESCRIPTIONS[Path(span["path"]).name]
            assert span["end"] - span["start"] == pytest.approx(1.2 if split == "train" else 0.8)
            if split == "train":
                trained[span["path"]].append((span["start"], span["end"]))
    for row in rows["valid"] + rows["test"]:
        span = row["motion"]
        assert all(span["end"] <= start or span["start"] >= end for start, end in trained[span["path"]]), span
    window = load_motion(rows["test"][-1]["motion"]).resampled(30)  # the task's 24 frames at 30 fps
    assert (window.num_frames, window.skeleton.num_joints) == (24, 31)


BUILD_TWICE = """
import hashlib, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from run_scripts.demo.data_common import SplitSizes
from run_scripts.demo.data_digits import build_digit_motion
from run_scripts.demo.data_speech import build_spoken_digits
out = Path(sys.argv[1])
build_digit_motion(out / "motion", SplitSizes(20, 8, 8), 1)
build_spoken_digits(out / "speech", SplitSizes(40, 8, 8), 1)
for path in sorted(out.rglob("*.*")):
    print(path.relative_to(out), hashlib.md5(path.read_bytes()).hexdigest())
"""


def test_videos_and_spoken_digits_are_the_same_bytes_in_every_process(tmp_path):
    """x264's macroblock-tree rate control and eSpeak NG's unseeded breath noise made one seed's data differ
    between runs, and so its training (run_scripts/demo/README.md)."""
    script = BUILD_TWICE.format(root=str(Path(__file__).resolve().parents[1]))
    listings = [subprocess.run([sys.executable, "-c", script, str(tmp_path / run)], capture_output=True, text=True,
                               check=True).stdout for run in ("a", "b")]
    assert listings[0].count(".mp4") == 36 and listings[0].count(".wav") == 56
    assert listings[0] == listings[1]
