"""Numerics (docs/reliability.md, guarantee 6), through ofasys-train with the probe plugin's criterion: a NaN loss
or an infinite gradient skips that update and logs the task and the batch's row ids, and training goes on; 5
bad updates in a row stop the run with one line and no checkpoint. fp16 (whose GradScaler handles overflow)
needs CUDA: on CPU it is refused up front; run_scripts/bench/fp16_smoke.py checks the scaler on a GPU.
(tests/test_trainer.py covers the same skip logic through the Python API.)"""
import re

import torch

from ofasys_fs.checkpoint import load_checkpoint
from ofasys_fs.cli.train import main as train_main

from .conftest import MAX_UPDATE, copy_rows, write_jsonl

POISONED_ROW = 5


def poisoned_data(tmp_path, poison: str, rows=(POISONED_ROW,)) -> str:
    data = copy_rows(16)
    for row in rows:
        data[row]["poison"] = poison
    return f"tasks.0.data.train={write_jsonl(tmp_path / 'poisoned.jsonl', data)}"


def skipped_batches(output: str, what: str) -> list[list[int]]:
    """Row ids of each batch the log reports as skipped for `what`."""
    pattern = rf"update \d+ skipped: a non-finite {what}.*?task 'copy',? rows \[([\d, ]+)\]"
    return [[int(i) for i in ids.split(",")] for ids in re.findall(pattern, output)]


def test_a_nan_loss_skips_that_update_logs_task_and_rows_and_training_goes_on(micro, tmp_path, capsys):
    save_dir = tmp_path / "run"
    assert train_main(micro.argv(save_dir, poisoned_data(tmp_path, "nan"))) == 0
    output = capsys.readouterr().out
    batches = skipped_batches(output, "loss in")
    assert batches and all(POISONED_ROW in rows for rows in batches), output[-3000:]
    assert "(1 in a row)" in output and "(2 in a row)" not in output
    state = load_checkpoint(str(save_dir / "checkpoint_last.pt"))
    assert state["train_meta"]["num_updates"] == MAX_UPDATE  # skipped updates do not count
    assert all(torch.isfinite(value).all() for value in state["model"].values())


def test_an_infinite_gradient_skips_that_update_and_training_goes_on(micro, tmp_path, capsys):
    save_dir = tmp_path / "run"
    assert train_main(micro.argv(save_dir, poisoned_data(tmp_path, "grad"))) == 0
    batches = skipped_batches(capsys.readouterr().out, "gradient norm")
    assert batches and all(POISONED_ROW in rows for rows in batches)
    state = load_checkpoint(str(save_dir / "checkpoint_last.pt"))
    assert all(torch.isfinite(value).all() for value in state["model"].values())


def test_five_bad_updates_in_a_row_stop_the_run_with_one_line(micro, tmp_path, capsys):
    save_dir = tmp_path / "run"
    assert train_main(micro.argv(save_dir, poisoned_data(tmp_path, "nan", rows=range(16)))) == 1
    captured = capsys.readouterr()
    assert len(skipped_batches(captured.out, "loss in")) == 5
    message = captured.err
    assert message.startswith("ofasys-train: error: 5 updates in a row were skipped, the last for a non-finite loss "
                              "in task 'copy', rows [") and message.count("\n") == 1
    assert not list(save_dir.glob("*.pt"))


def test_fp16_on_cpu_is_refused_before_training(micro, tmp_path, capsys):
    save_dir = tmp_path / "run"
    assert train_main(micro.argv(save_dir, "--fp16")) == 1
    message = capsys.readouterr().err
    assert message == "ofasys-train: error: fp16 needs a CUDA device (device is cpu); use --bf16 on CPU\n"
    assert not list(save_dir.glob("*.pt"))
