"""The demo's result: score each task's ofasys-generate output and its trivial baseline with the task's
metric, print the table task | metric | this model | baseline, and draw the pictures (pictures.py); the
speech row comes from report_speech.py, the notes on generated images and motion from image_report.py and
report_motion.py."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ofasys_fs.inference.evaluate import score
from ofasys_fs.metrics.box_iou import box_iou

from .baselines import best_baseline, headline
from .demo_tasks import DemoTask, target_column
from .image_report import image_outputs, with_absolute
from .pictures import draw_curves, draw_grounding
from .report_motion import motion_outputs
from .report_speech import score_speech

CLEAR_MARGIN = 0.10  # "clearly above the baseline": at least this much more of a 0-1 metric
GROUNDING_EXAMPLES = 12


def read_predictions(path: Path, expected_rows: int) -> list[dict]:
    """ofasys-generate's JSON lines in row order; every test row must have exactly one."""
    with open(path, encoding="utf-8") as handle:
        outputs = sorted((json.loads(line) for line in handle), key=lambda output: output["id"])
    if [output["id"] for output in outputs] != list(range(expected_rows)):
        raise ValueError(f"{path}: expected one prediction for each of the {expected_rows} test rows, "
                         f"got ids {[output['id'] for output in outputs][:10]}...")
    return outputs


def prediction(output: dict, folder: Path):
    """What the metric scores: the image file of an IMAGE output (in `folder`), the box of a BOX output, else the
    text."""
    if "file" in output:
        return str(folder / output["file"])
    return output["box"] if "box" in output else output.get("text", "")


def metric_spec(task: DemoTask, train_rows: list[dict], test_rows: list[dict]):
    """The task's metric name, or {"name", **options} when its options come from the data."""
    if task.metric_options is None:
        return task.metric
    return {"name": task.metric, **task.metric_options(train_rows, test_rows)}


def score_task(task: DemoTask, outputs: list[dict], train_rows: list[dict], test_rows: list[dict],
               folder: Path) -> dict:
    """One row of the table: the model's value of the task's metric on the test rows, its trivial baseline's
    and, if the task has stricter rules, the best of them (`folder`: where ofasys-generate wrote media files)."""
    column, metric = target_column(task), metric_spec(task, train_rows, test_rows)
    references = [row[task.references or column] for row in test_rows]
    model_values, _ = score(metric, [prediction(output, folder) for output in outputs], references)
    model = headline(task.metric, model_values)
    baseline_is, baseline_values = best_baseline((task.baseline,), metric, column, train_rows, test_rows,
                                                 task.references)
    row = {"task": task.name, "inputs": task.inputs, "metric": task.metric, "test_rows": len(test_rows),
           "model": model, "baseline": headline(task.metric, baseline_values), "baseline_is": baseline_is,
           "stricter": None, "stricter_is": None, "above_stricter": None, "values": model_values}
    row["clearly_above"] = model - row["baseline"] >= CLEAR_MARGIN
    if task.stricter:
        stricter_is, stricter_values = best_baseline(task.stricter, metric, column, train_rows, test_rows,
                                                     task.references)
        row.update(stricter=headline(task.metric, stricter_values), stricter_is=stricter_is)
        row["above_stricter"] = model - row["stricter"] >= CLEAR_MARGIN
    return row


def table_text(rows: Sequence[dict]) -> str:
    """The markdown table the demo prints and writes to results.md."""
    lines = ["| task | input -> output | metric | test rows | this model | trivial baseline | stricter rule |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        mark = "" if row["clearly_above"] else " (not clearly above)"
        stricter = "-" if row["stricter"] is None else (
            f"{row['stricter']:.3f}{'' if row['above_stricter'] else ' (model not clearly above)'}: "
            f"{row['stricter_is']}")
        if row.get("ceiling") is not None:
            stricter = f"ceiling {row['ceiling']:.3f}: {row['ceiling_is']}"
        lines.append(f"| {row['task']} | {row['inputs']} | {row['metric']} | {row['test_rows']} | "
                     f"{row['model']:.3f}{mark} | {row['baseline']:.3f}: {row['baseline_is']} | {stricter} |")
    return "\n".join(lines)


def verdict(rows: Sequence[dict]) -> str:
    """Whether every task clearly beats its trivial baseline, and which stricter rules it beats."""
    trivial = ("every task is clearly above its trivial baseline" if all(row["clearly_above"] for row in rows) else
               "NOT every task is clearly above its trivial baseline (margin %.2f)" % CLEAR_MARGIN)
    checked = [row for row in rows if row["stricter"] is not None]
    beaten = [row["task"] for row in checked if row["above_stricter"]]
    missed = [row["task"] for row in checked if not row["above_stricter"]]
    return (trivial + "; clearly above the stricter rule: " + (", ".join(beaten) or "none") +
            ("; not: " + ", ".join(missed) if missed else ""))


def grounding_examples(out: Path, task: DemoTask, outputs: list[dict], test_rows: list[dict]) -> list[dict]:
    column = target_column(task)
    examples = []
    for output, row in list(zip(outputs, test_rows))[:GROUNDING_EXAMPLES]:
        examples.append({"image": out / "raw" / task.name / row["img"], "text": row["cap"], "true": row[column],
                         "predicted": output["box"], "iou": box_iou(output["box"], row[column])})
    return examples


def box_landings(task: DemoTask, outputs: list[dict], test_rows: list[dict]) -> str:
    """Where predicted boxes land (IoU >= 0.5) among the canvas's digits: what grounding learnt beyond boxing
    something, i.e. boxing a digit at all versus boxing the named one."""
    column = target_column(task)
    named = other = 0
    for output, row in zip(outputs, test_rows):
        hits = [box for box in row["digit_boxes"] if box_iou(output["box"], box) >= 0.5]
        named += row[column] in hits
        other += bool(hits) and row[column] not in hits
    return (f"{task.name}: of {len(test_rows)} predicted boxes, {named} land on the named digit, {other} on another "
            f"digit of the canvas, {len(test_rows) - named - other} on no digit")


def write_report(out: Path, tasks: Sequence[DemoTask], predictions: dict[str, Path],
                 data: dict[str, tuple[list[dict], list[dict]]]) -> list[dict]:
    """Score every task, print and save the table (results.md, results.json), draw curves and grounding
    pictures; returns the table's rows."""
    rows, pictures, notes = [], [], []
    for task in tasks:
        train_rows, test_rows = data[task.name]
        outputs = read_predictions(predictions[task.name], len(test_rows))
        folder = predictions[task.name].parent  # where ofasys-generate wrote the task's media files
        if outputs and "sample_rate" in outputs[0]:  # generated speech
            row, note, picture = score_speech(out, task, outputs, train_rows, test_rows, folder)
            rows.append(row)
            notes.append(note)
            pictures.append(picture)
            continue
        if task.metric_options is not None:  # the metric reads the rows' media itself
            column, raw = target_column(task), out / "raw" / task.name
            train_rows, test_rows = (with_absolute(rows, raw, column) for rows in (train_rows, test_rows))
        rows.append(score_task(task, outputs, train_rows, test_rows, folder))
        if outputs and "fps" in outputs[0]:  # generated motion (its "file" is a BVH)
            note, gifs = motion_outputs(out, task, outputs, train_rows, test_rows, folder, rows[-1])
            notes.append(note)
            pictures += gifs
        elif outputs and "file" in outputs[0]:  # generated images
            note, picture = image_outputs(out, task, outputs, train_rows, test_rows, folder)
            notes.append(note)
            pictures.append(picture)
        if outputs and "box" in outputs[0]:
            pictures.append(draw_grounding(grounding_examples(out, task, outputs, test_rows),
                                           out / f"grounding_{task.name}.png"))
            if "digit_boxes" in test_rows[0]:
                notes.append(box_landings(task, outputs, test_rows))
    pictures += draw_curves(out / "checkpoints" / "train_log.jsonl", {task.name: task.metric for task in tasks},
                            out / "curves")
    text = "\n\n".join([table_text(rows), verdict(rows), *notes])
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print("\n" + text)
    print("pictures: " + ", ".join(str(path) for path in pictures), flush=True)
    return rows
