"""The report of a MOTION output (text_to_motion): the judge's ceiling (its accuracy on the real test windows)
beside the table's row, the Fréchet distance of the generated motion on the judge's features next to that of
random training windows and of real motion, and one GIF of generated motion per prompt
(demo_out/text_to_motion_<prompt>.gif, from ofasys-generate's stick-figure GIFs)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from ofasys_fs.registry import build_metric

from .baselines import rule_predictions
from .demo_tasks import DemoTask, target_column
from .image_report import generated_files


def gif_name(task: DemoTask, prompt: str) -> str:
    """text_to_motion_climb_hang_swing.gif for the prompt "climb, hang, swing"."""
    return f"{task.name}_{re.sub(r'[^a-z0-9]+', '_', prompt.lower()).strip('_')}.gif"


def prompt_gifs(out: Path, task: DemoTask, outputs: list[dict], test_rows: list[dict], folder: Path) -> list[Path]:
    """The GIF of the first test row of each prompt, copied into `out`; returns their paths."""
    paths = {}
    for output, row in zip(outputs, test_rows):
        prompt = row[task.references]
        if prompt not in paths:
            gif = next(name for name in output["files"] if name.endswith(".gif"))
            paths[prompt] = Path(shutil.copyfile(folder / gif, out / gif_name(task, prompt)))
    return list(paths.values())


def motion_outputs(out: Path, task: DemoTask, outputs: list[dict], train_rows: list[dict], test_rows: list[dict],
                   folder: Path, row: dict) -> tuple[str, list[Path]]:
    """Adds the judge's ceiling to the table's `row` (score_task's, with the metric's values); returns (a note for
    the report, the GIFs)."""
    values = row["values"]
    row.update(ceiling=values["motion_classifier_ceiling"], ceiling_is="the judge on the real test windows")
    column = target_column(task)
    distance = build_metric({"name": "motion_fid", **task.metric_options(train_rows, test_rows)})
    real = [test_row[column] for test_row in test_rows]
    _, random_windows = rule_predictions(task.baseline, column, train_rows, test_rows)
    model = distance.compute(generated_files(outputs, folder), real)
    note = (f"{task.name}: the judge (a motion classifier trained on the real training windows) reads the real test "
            f"windows at {row['ceiling']:.3f} (chance {values['chance']:.2f}). Fréchet distance to the real test "
            f"windows on its features (lower is better): model {model['motion_fid']:.2f}, random training windows "
            f"{distance.compute(random_windows, real)['motion_fid']:.2f}, real training windows (every window of "
            f"the training spans) {model['motion_fid_real']:.2f}")
    return note, prompt_gifs(out, task, outputs, test_rows, folder)
