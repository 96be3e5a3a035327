"""The generalist-versus-specialists harness (docs/multitask.md) must not rot: its smoke command, run as the
docs print it, trains the generalist and every specialist and prints the table; the photo tasks keep their
held-out rows apart from training."""
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run_scripts/ is not installed with the package

from run_scripts.multitask import harness, photo_data  # noqa: E402

SMOKE = ("python -m run_scripts.multitask.harness --tasks photo --updates-per-task 4 --rows-factor 0.01 "
         "--out multitask_smoke")


def test_the_printed_smoke_command_prints_the_table(tmp_path, monkeypatch, capsys):
    assert SMOKE in (REPO / "docs" / "multitask.md").read_text(encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert harness.main(shlex.split(SMOKE)[3:]) == 0
    printed = capsys.readouterr().out
    assert "| task | metric | specialist | generalist | ratio | trivial | stricter |" in printed
    results = json.loads((tmp_path / "multitask_smoke" / "results_seed1.json").read_text())["results"]
    assert [row["task"] for row in results] == list(harness.PHOTO_TASKS)
    for row in results:
        assert 0 <= row["specialist"] and 0 <= row["generalist"] and 0 <= row["trivial"], row
        assert row["decoding_seeds"] == [None], row  # text and boxes decode by beam search: one draw
    assert "worst ratio" in printed


def test_photo_tasks_cut_test_rows_from_other_columns_and_name_objects_in_human_words():
    image = np.arange(100 * 200).reshape(100, 200, 1).repeat(3, axis=2) % 200  # pixel value = its column
    rng = np.random.default_rng(0)
    for split, (start, end) in photo_data.SPLIT_COLUMNS.items():
        columns = np.asarray(photo_data.random_crop(image.astype(np.uint8), split, (0.15, 0.4), rng))[..., 0]
        assert start * 200 <= columns.min() and columns.max() < end * 200, split
    assert photo_data.photo_name("coffee") == "coffee cup"
    rows = photo_data.grounding_rows(photo_data.Photos(), "test", 5, rng)
    for row in rows:
        assert row["box"] in row["boxes"] and 2 <= len(row["boxes"]) <= 3


def test_demo_generators_train_with_the_image_tokenizer_and_score_with_their_judges(tmp_path, capsys):
    """The demo's three generation tasks (a subset of --tasks demo: the rest are the photo tasks' kinds) run end to
    end: one image tokenizer for every run, the judges' options, an error rate's ratio inverted, and each scored
    as the mean of its decoding seeds."""
    only = "text_to_speech,text_to_image,text_to_motion"
    assert harness.main(["--tasks", "demo", "--only", only, "--updates-per-task", "2", "--rows-factor", "0.05",
                         "--decoding-seeds", "2", "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "results_seed1.json").read_text())
    assert Path(saved["options"]["image_tokenizer"]).is_file()
    results = {row["task"]: row for row in saved["results"]}
    assert list(results) == only.split(",")
    for row in results.values():
        assert 0 <= row["specialist"] <= 1 and 0 <= row["generalist"] <= 1 and 0 <= row["trivial"] <= 1, row
    assert [results[name]["decoding_seeds"] for name in only.split(",")] == [[1, 2], [1, 2], [0, 1]]
    for row in results.values():
        for model in ("specialist", "generalist"):
            draws = row[f"{model}_per_seed"]
            assert len(draws) == 2 and row[model] == pytest.approx(sum(draws) / 2), row
    speech = results["text_to_speech"]
    printed = capsys.readouterr().out
    assert speech["higher_is_better"] is False and "asr_wer (lower is better)" in printed
    assert "text_to_speech: the mean of 2 decoding seeds 1-2; specialist " in printed
    assert speech["ratio"] == harness.ratio(speech["specialist"], speech["generalist"], False)
    assert harness.ratio(0.5, 0.25, False) == 2.0 == harness.ratio(0.25, 0.5, True)


def test_an_ablation_of_the_generalist_alone_leaves_the_specialists_unscored(tmp_path):
    assert harness.main(["--tasks", "photo", "--only", "photo_texture", "--generalist-only", "--updates-per-task",
                         "2", "--rows-factor", "0.01", "--out", str(tmp_path)]) == 0
    [row] = json.loads((tmp_path / "results_seed1.json").read_text())["results"]
    assert 0 <= row["generalist"] <= 1 and row["higher_is_better"] is True, row
    assert np.isnan(row["specialist"]) and np.isnan(row["ratio"]), row
