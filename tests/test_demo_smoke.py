"""`make demo` must not rot: its smoke version (same code path, a few rows, about 60 updates) runs here.

It builds every data set (the Reuters articles are fetched once with apt-get into the user cache), shards
them with ofasys-preprocess, trains one model with ofasys-train, decodes the test rows with ofasys-generate
and writes the table and pictures. The numbers of a 60-update model are not checked, only that every step
produced what the report needs.
"""
import json
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run_scripts/ is not installed with the package

from run_scripts.demo import run_demo  # noqa: E402
from run_scripts.demo.data_motion import DESCRIPTIONS  # noqa: E402
from run_scripts.demo.demo_tasks import TASKS, predictions_file  # noqa: E402
from run_scripts.demo.report_motion import gif_name  # noqa: E402

MODALITIES = ("IMAGE", "TEXT", "BOX", "AUDIO", "STRUCT", "VIDEO", "MOTION")


def test_demo_tasks_cover_every_modality():
    slots = " ".join(task.instruction for task in TASKS)
    assert [modality for modality in MODALITIES if f"[{modality}:" not in slots] == []
    assert len(TASKS) >= 6


def test_smoke_demo_runs_every_step(tmp_path):
    out = tmp_path / "demo_out"
    assert run_demo.main(["--smoke", "--out", str(out)]) == 0

    rows = json.loads((out / "results.json").read_text())
    assert [row["task"] for row in rows] == [task.name for task in TASKS]
    for row, task in zip(rows, TASKS):
        assert 0.0 <= row["model"] <= 1.0 and 0.0 <= row["baseline"] <= 1.0, row
        predictions = predictions_file(out, task.name).read_text().splitlines()
        assert len(predictions) == row["test_rows"] > 0
    table = (out / "results.md").read_text()
    assert table.startswith("| task | input -> output | metric |") and all(task.name in table for task in TASKS)
    log = [json.loads(line) for line in (out / "checkpoints" / "train_log.jsonl").read_text().splitlines()]
    assert max(record["update"] for record in log) == run_demo.SMOKE.max_update
    machine = json.loads((out / "timings.json").read_text())["machine"]  # printed beside the timings
    assert machine["threads"] >= 1 and machine["matmul_gflops"]["1"] > 0
    for name in [f"curves/{task.name}.png" for task in TASKS] + ["curves.png", "grounding_digit_grounding.png",
                                                                   "spectrograms_text_to_speech.png",
                                                                   "text_to_image_samples.png"]:
        with Image.open(out / name) as image:
            assert image.width > 100 and image.height > 100, name
    motion = next(task for task in TASKS if task.name == "text_to_motion")
    for prompt in DESCRIPTIONS.values():  # a GIF of generated motion per prompt: 24 frames, as generated
        with Image.open(out / gif_name(motion, prompt)) as gif:
            assert gif.format == "GIF" and gif.n_frames == 24 and gif.width >= 100, prompt
    assert rows[-1]["task"] == "text_to_motion" and 0 < rows[-1]["ceiling"] <= 1
