"""The generalist-versus-specialists harness (docs/multitask.md) must not rot: its smoke command, run as the
docs print it, trains the generalist and every specialist and prints the table; the photo tasks keep their
held-out rows apart from training."""
import json
import shlex
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run_scripts/ is not installed with the package

from run_scripts.multitask import clipart_data, harness, photo_data, summary  # noqa: E402

SMOKE = ("python -m run_scripts.multitask.harness --tasks photo --updates-per-task 4 --rows-factor 0.01 "
         "--out multitask_smoke")
SUMMARY = "python -m run_scripts.multitask.summary multitask_smoke/results_seed1.json multitask_smoke/results_seed2.json"


def test_the_printed_smoke_commands_print_the_table_and_the_mean_over_seeds(tmp_path, monkeypatch, capsys):
    docs = (REPO / "docs" / "multitask.md").read_text(encoding="utf-8")
    for command in (SMOKE, SMOKE + " --seed 2", SUMMARY):
        assert f"    {command}\n" in docs, command
    monkeypatch.chdir(tmp_path)
    assert harness.main(shlex.split(SMOKE)[3:]) == 0
    printed = capsys.readouterr().out
    assert "| task | metric | specialist | generalist | ratio | trivial | stricter |" in printed
    saved = json.loads((tmp_path / "multitask_smoke" / "results_seed1.json").read_text())
    assert saved["seed"] == 1
    results = saved["results"]
    assert [row["task"] for row in results] == list(harness.PHOTO_TASKS)
    for row in results:
        assert 0 <= row["specialist"] and 0 <= row["generalist"] and 0 <= row["trivial"], row
        assert row["decoding_seeds"] == [None], row  # text and boxes decode by beam search: one draw
    assert "worst ratio" in printed
    assert harness.main(shlex.split(SMOKE + " --seed 2")[3:]) == 0
    capsys.readouterr()
    assert summary.main(shlex.split(SUMMARY)[3:]) == 0
    printed = capsys.readouterr().out
    assert "| task | metric | seeds | specialist | generalist | ratio of means | ratio per seed | trivial |" in printed
    second = json.loads((tmp_path / "multitask_smoke" / "results_seed2.json").read_text())["results"]
    caption = next(line for line in printed.splitlines() if line.startswith("| photo_caption |"))
    mean = (results[1]["generalist"] + second[1]["generalist"]) / 2
    assert f"| 1,2 |" in caption and f"| {mean:.3f} |" in caption, caption


def results_file(folder, seed: int, rows: list, options: dict = None) -> Path:
    """A results file as the harness writes it, with the rows given as (task, higher_is_better, spec, gen)."""
    path = folder / f"run{len(list(folder.iterdir()))}" / f"results_seed{seed}.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"options": options or {}, "results": [
        {"task": task, "metric": "m", "higher_is_better": higher, "specialist": spec, "generalist": gen,
         "trivial": 0.1} for task, higher, spec, gen in rows]}))
    return path


def test_the_summary_merges_the_halves_of_a_seed_and_takes_the_ratio_of_the_means(tmp_path):
    nan = float("nan")
    files = [results_file(tmp_path, 1, [("acc", True, nan, 0.6), ("wer", False, nan, 0.2)]),
             results_file(tmp_path, 1, [("acc", True, 0.8, nan), ("wer", False, 0.1, nan)]),
             results_file(tmp_path, 2, [("acc", True, 0.6, 0.9), ("wer", False, 0.3, 0.2)]),
             results_file(tmp_path, 3, [("acc", True, 0.7, nan)])]  # a generalist never run: not in the means
    rows = {r["task"]: r for r in summary.mean_rows(summary.merge(files)[0])}
    assert rows["acc"]["seeds"] == [1, 2]
    assert rows["acc"]["specialist"] == pytest.approx(0.7) and rows["acc"]["generalist"] == pytest.approx(0.75)
    assert rows["acc"]["ratio"] == pytest.approx(0.75 / 0.7)
    assert rows["acc"]["ratio_per_seed"] == pytest.approx([0.75, 1.5])
    assert rows["wer"]["ratio"] == pytest.approx(0.2 / 0.2)  # lower is better: specialist / generalist
    assert rows["wer"]["ratio_per_seed"] == pytest.approx([0.5, 1.5])
    twice = results_file(tmp_path, 2, [("acc", True, 0.5, nan)])
    with pytest.raises(SystemExit, match="'acc', seed 2: the specialist is scored in two files"):
        summary.merge([*files, twice])


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
    texture = "[IMAGE:img,size=16] which photo is this a part of? -> [TEXT:label,closed_set]"
    assert harness.main(["--tasks", "photo", "--only", "photo_texture", "--generalist-only", "--updates-per-task",
                         "2", "--rows-factor", "0.01", "--instruction", f"photo_texture={texture}",
                         "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "results_seed1.json").read_text())
    [row] = written["results"]
    assert 0 <= row["generalist"] <= 1 and row["higher_is_better"] is True, row
    assert np.isnan(row["specialist"]) and np.isnan(row["ratio"]), row
    assert written["instructions"] == {"photo_texture": texture}
    with pytest.raises(SystemExit, match="TASK one of photo_texture; got 'texture=x'"):
        harness.main(["--tasks", "photo", "--only", "photo_texture", "--instruction", "texture=x"])


def test_a_run_with_ema_is_scored_with_its_averaged_weights():
    tasks, options = harness.photo_tasks(seed=1, rows_factor=0.01)
    model, trainer = harness.train(tasks[:1], 2, {**options, "ema_decay": 0.5}, seed=1)
    weights = model.state_dict()
    assert all(torch.equal(weights[name], trainer.ema.shadow[name]) for name in trainer.ema.param_names)


def fake_clipart(root: Path) -> Path:
    """A few drawings in openclipart-png's layout (category folders, the author's title in a PNG text chunk, a
    transparent page around the drawing), titled as the library's are."""
    from PIL import Image, PngImagePlugin

    titles = {"animals/mammals/dog.png": ("Happy_Monkey", "tEXt"), "food/cake.png": ("Torta  al Cioccolato", "zTXt"),
              "tools/hammer.png": ("Construction-Hammer", "iTXt"), "plants/tree.png": ("Tree", "tEXt"),
              "plants/tree2.png": ("tree", "tEXt"),  # a title two drawings share names neither
              "people/long.png": ("A man who walks his dog in the park", "tEXt"),  # a sentence, not a caption
              "computer/mouse.png": ("Mouse", "tEXt")}  # a category the set leaves out
    for index, (name, (title, chunk)) in enumerate(titles.items()):
        drawing = Image.new("RGBA", (90, 60), (0, 0, 0, 0))
        drawing.paste(Image.new("RGBA", (40, 30), (40 * index, 255 - 30 * index, 90, 255)), (30, 20))
        info = PngImagePlugin.PngInfo()
        if chunk == "iTXt":
            info.add_itxt("Title", title, zip=True)
        else:
            info.add_text("Title", title, zip=chunk == "zTXt")
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        drawing.save(path, pnginfo=info)
    return root


def test_clipart_captions_are_the_authors_titles_and_boxes_bound_the_drawings(tmp_path):
    root = fake_clipart(tmp_path / "png")
    assert clipart_data.png_header(root / "food/cake.png") == (90, 60, "Torta  al Cioccolato")
    assert [text for text, _ in clipart_data.catalogue(root)] == [
        "construction hammer", "happy monkey", "torta al cioccolato"]
    drawings = clipart_data.Drawings(root, count=3)
    assert all(drawing.size == (40, 30) for _, drawing in drawings.drawings)  # the page around it is cut away
    rng = np.random.default_rng(0)
    for row in clipart_data.grounding_rows(drawings, "test", 6, rng):
        canvas = np.asarray(row["img"])
        assert row["text"] in {text for text, _ in drawings.drawings} and row["box"] in row["boxes"]
        for x0, y0, x1, y1 in row["boxes"]:
            assert max(x1 - x0, y1 - y0) in range(20, 31) and x1 <= 64 and y1 <= 64
            assert (canvas[y0:y1, x0:x1, 2] == 90).all()  # the drawing's own colour fills its box
    with pytest.raises(ValueError, match="3 usable titled drawings, 4 needed"):
        clipart_data.Drawings(root, count=4)
    with pytest.raises(FileNotFoundError, match="openclipart-png"):
        clipart_data.catalogue(tmp_path / "missing")


def test_the_clipart_set_trains_and_scores_its_three_tasks(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(clipart_data, "ROOT", fake_clipart(tmp_path / "png"))
    monkeypatch.setattr(clipart_data, "DRAWINGS", 3)
    assert harness.main(["--tasks", "clipart", "--updates-per-task", "2", "--rows-factor", "0.01",
                         "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results_seed1.json").read_text())["results"]
    assert [row["task"] for row in results] == list(harness.CLIPART_TASKS)
    for row in results:
        assert 0 <= row["specialist"] and 0 <= row["generalist"] and 0 <= row["trivial"], row
    texture, caption, grounding = results
    assert texture["specialist_on_any"] is None and caption["generalist_on_any"] is None
    for model in ("specialist", "generalist"):  # the named box is one of the candidates
        assert grounding[model] <= grounding[f"{model}_on_any"] <= 1, grounding
    assert (f"clipart_grounding: boxes on any of the row's objects, named or not: specialist "
            f"{grounding['specialist_on_any']:.3f}, generalist {grounding['generalist_on_any']:.3f}") in capsys.readouterr().out


def test_boxes_on_any_candidate_are_scored_against_each_rows_own_candidates(monkeypatch):
    """A prediction on the row's other object counts for "any", not for the metric; rows keep their candidates."""
    rows = [{"box": [0, 0, 10, 10], "boxes": [[0, 0, 10, 10], [20, 20, 30, 30]]},
            {"box": [40, 40, 50, 50], "boxes": [[40, 40, 50, 50], [0, 0, 10, 10]]},
            {"box": [5, 5, 9, 9], "boxes": [[5, 5, 9, 9], [50, 50, 60, 60]]}]
    spec = harness.HarnessTask("g", harness.PHOTO_TASKS["photo_grounding"][0], "acc_iou", {"test": rows}, "mean_box",
                               ("random_of:boxes",))
    assert spec.candidates == "boxes"
    evaluation = types.SimpleNamespace(indices=[2, 0, 1], predictions=[[30, 30, 40, 40], [20, 20, 30, 30],
                                                                      [40, 40, 50, 50]],
                                       metrics={"acc_iou": 1 / 3}, higher_is_better=True)
    monkeypatch.setattr(harness, "evaluate", lambda *args, **kwargs: evaluation)
    trainer = types.SimpleNamespace(tasks=[types.SimpleNamespace(name="g")], encoders={"g": None})
    scores, higher_is_better, on_any = harness.test_score(None, trainer, spec)
    assert scores == [1 / 3] and higher_is_better is True
    assert on_any == pytest.approx(2 / 3)  # rows 0 (the other object) and 1 (the named one); row 2 misses
