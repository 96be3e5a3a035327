"""The demo's result: score each task's ofasys-generate output and its trivial baseline with the task's
metric, print the table task | metric | this model | baseline, and draw the pictures (pictures.py)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ofasys_fs.inference.evaluate import score
from ofasys_fs.metrics.box_iou import box_iou

from .demo_tasks import DemoTask, baseline_predictions, target_column
from .pictures import draw_curves, draw_grounding

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


def prediction(output: dict):
    """What the metric scores: the box of a BOX output, else the text."""
    return output["box"] if "box" in output else output.get("text", "")


def headline(metric: str, values: dict[str, float]) -> float:
    return values.get(metric, next(iter(values.values())))


def score_task(task: DemoTask, outputs: list[dict], train_rows: list[dict], test_rows: list[dict]) -> dict:
    """One row of the table: the model's and the baseline's value of the task's metric on the test rows."""
    references = [row[target_column(task)] for row in test_rows]
    model_values, _ = score(task.metric, [prediction(output) for output in outputs], references)
    baseline_name, baseline = baseline_predictions(task, train_rows, test_rows)
    baseline_values, _ = score(task.metric, baseline, references)
    model, base = headline(task.metric, model_values), headline(task.metric, baseline_values)
    return {"task": task.name, "inputs": task.inputs, "metric": task.metric, "test_rows": len(test_rows),
            "model": model, "baseline": base, "baseline_is": baseline_name,
            "clearly_above": model - base >= CLEAR_MARGIN}


def table_text(rows: Sequence[dict]) -> str:
    """The markdown table the demo prints and writes to results.md."""
    lines = ["| task | input -> output | metric | test rows | this model | baseline | baseline is |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        mark = "" if row["clearly_above"] else " (not clearly above)"
        lines.append(f"| {row['task']} | {row['inputs']} | {row['metric']} | {row['test_rows']} | "
                     f"{row['model']:.3f}{mark} | {row['baseline']:.3f} | {row['baseline_is']} |")
    return "\n".join(lines)


def grounding_examples(out: Path, task: DemoTask, outputs: list[dict], test_rows: list[dict]) -> list[dict]:
    column = target_column(task)
    examples = []
    for output, row in list(zip(outputs, test_rows))[:GROUNDING_EXAMPLES]:
        examples.append({"image": out / "raw" / task.name / row["img"], "text": row["cap"], "true": row[column],
                         "predicted": output["box"], "iou": box_iou(output["box"], row[column])})
    return examples


def write_report(out: Path, tasks: Sequence[DemoTask], predictions: dict[str, Path],
                 data: dict[str, tuple[list[dict], list[dict]]]) -> list[dict]:
    """Score every task, print and save the table (results.md, results.json), draw curves and grounding
    pictures; returns the table's rows."""
    rows, pictures = [], []
    for task in tasks:
        train_rows, test_rows = data[task.name]
        outputs = read_predictions(predictions[task.name], len(test_rows))
        rows.append(score_task(task, outputs, train_rows, test_rows))
        if outputs and "box" in outputs[0]:
            pictures.append(draw_grounding(grounding_examples(out, task, outputs, test_rows),
                                           out / f"grounding_{task.name}.png"))
    pictures += draw_curves(out / "checkpoints" / "train_log.jsonl", {task.name: task.metric for task in tasks},
                            out / "curves")
    table = table_text(rows)
    verdict = ("every task is clearly above its baseline" if all(row["clearly_above"] for row in rows) else
               "NOT every task is clearly above its baseline (margin %.2f)" % CLEAR_MARGIN)
    (out / "results.md").write_text(table + "\n\n" + verdict + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print("\n" + table + "\n\n" + verdict)
    print("pictures: " + ", ".join(str(path) for path in pictures), flush=True)
    return rows
