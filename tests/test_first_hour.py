"""What a new user meets first (issue 18): the README's quick start as printed, and what training says and writes
when things are not as expected (no valid split, bad rows, a resumed run that is done, a typo in a flag)."""
import json

import numpy as np
import pytest
from PIL import Image

from documented import blocks, execute
from ofasys_fs.checkpoint import load_checkpoint
from ofasys_fs.cli import train
from ofasys_fs.errors import CheckpointError, ConfigError, DataError
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.tasks.base import Task

SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "birds sing in the morning", "the sun is warm"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def test_the_readme_quick_start_runs_as_printed(tmp_path, capsys):
    for name, colour in (("cat.jpg", (200, 120, 40)), ("dog.jpg", (40, 90, 200))):
        Image.fromarray(np.full((48, 64, 3), colour, dtype=np.uint8)).save(tmp_path / name)
    write_jsonl(tmp_path / "sentences.jsonl", [{"sentence": s} for s in SENTENCES])
    (code,) = blocks("README.md", "python")[:1]
    execute(code, tmp_path)
    out = capsys.readouterr().out
    assert "checkpoint_best.pt will be the last checkpoint" in out  # no valid split: said at the start ...
    assert "checkpoint_best.pt = the last checkpoint (no task has validation data)" in out  # ... and at the end
    assert out.strip().splitlines()[-1] in ("a cat on a mat", "a dog in the grass")  # learnt the two captions
    best = load_checkpoint(str(tmp_path / "ckpt" / "checkpoint_best.pt"))
    assert best["train_meta"]["best_source"] == "the last checkpoint: no validation data"
    assert best["train_meta"]["num_updates"] == 200


def copy_task(rows):
    return Task(name="copy", instruction="[TEXT:src] -> [TEXT:tgt]").add_dataset(rows, "train")


def micro_trainer(tmp_path, **options):
    settings = dict(arch="micro", device="cpu", num_codes=0, num_bins=10, batch_size=4, lr=3e-3, log_interval=1000,
                    save_dir=str(tmp_path / "ckpt"))
    return Trainer(**{**settings, **options})


def test_a_missing_checkpoint_names_what_the_folder_holds(tmp_path):
    micro_trainer(tmp_path, max_update=2).fit(tasks=[copy_task([{"src": "a", "tgt": "b"}] * 4)])
    with pytest.raises(CheckpointError, match=r"checkpoint_bset.pt does not exist; .*ckpt holds checkpoint_1.pt, "
                                              r"checkpoint_2.pt, checkpoint_best.pt, checkpoint_last.pt"):
        load_checkpoint(str(tmp_path / "ckpt" / "checkpoint_bset.pt"))


def test_bad_rows_are_skipped_and_counted_or_stop_the_run_after_saving(tmp_path, capsys):
    rows = [{"src": "a b", "tgt": "b a"}] * 7 + [{"src": {"not": "text"}, "tgt": "x"}]
    trainer = micro_trainer(tmp_path, max_update=6, skip_bad_rows=True)
    trainer.fit(tasks=[copy_task(rows)])
    out = capsys.readouterr().out
    assert out.count("skipped a bad row") == 1 and "row 7" in out and "expects a string, got dict" in out
    assert "done: 6 updates; 1 bad rows skipped" in out and trainer.num_updates == 6
    stopped = tmp_path / "stopped"
    with pytest.raises(DataError, match=r"row 7.*--skip-bad-rows"):
        micro_trainer(stopped, max_update=6, batch_size=2).fit(tasks=[copy_task(rows)])
    saved = load_checkpoint(str(stopped / "ckpt" / "checkpoint_last.pt"))  # the updates before the bad row are kept
    updates = saved["train_meta"]["num_updates"]
    assert 0 < updates < 6 and f"checkpoint_last.pt holds update {updates}" in capsys.readouterr().out


def test_a_finished_run_says_so_and_numbered_checkpoints_are_pruned(tmp_path, capsys):
    task = copy_task([{"src": "a", "tgt": "b"}] * 4)
    micro_trainer(tmp_path, max_update=5, log_format="tqdm").fit(tasks=[task])  # a numbered checkpoint per epoch
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert any(" loss " in line and ", lr 0.00" in line and "5/5" in line for line in bar)  # running loss and lr
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("checkpoint_*.pt")) == [
        "checkpoint_4.pt", "checkpoint_5.pt", "checkpoint_best.pt", "checkpoint_last.pt"]  # keep_last_n=2
    capsys.readouterr()
    micro_trainer(tmp_path, max_update=5).fit(tasks=[task])
    out = capsys.readouterr().out
    assert "nothing to train: the run in" in out and "already at update 5 (max_update 5" in out
    assert out.strip().splitlines()[-1].startswith("done: 5 updates; checkpoints in")
    none = tmp_path / "no_numbered"
    micro_trainer(none, max_update=3, no_epoch_checkpoints=True).fit(tasks=[task])
    assert sorted(p.name for p in (none / "ckpt").glob("*.pt")) == ["checkpoint_best.pt", "checkpoint_last.pt"]


def test_the_best_checkpoint_metric_knows_its_direction_or_asks(tmp_path):
    rows = [{"src": "a", "tgt": "b"}] * 4
    task = Task(name="copy", instruction="[TEXT:src] -> [TEXT:tgt]", metric="accuracy").add_dataset(rows, "train")
    task.add_dataset(rows, "valid")
    trainer = micro_trainer(tmp_path, max_update=2, best_checkpoint_metric="accuracy")
    trainer.fit(tasks=[task])
    assert trainer.higher_is_better() is True  # accuracy is maximised without --maximize-best-checkpoint-metric
    assert micro_trainer(tmp_path / "t", best_checkpoint_metric="copy.token_accuracy").higher_is_better() is True
    assert micro_trainer(tmp_path / "l", best_checkpoint_metric="nll_loss").higher_is_better() is False
    unknown = micro_trainer(tmp_path / "u", best_checkpoint_metric="copy.wer_of_mine")
    with pytest.raises(ConfigError, match="cannot tell whether higher is better; set maximize_best_checkpoint_metric"):
        unknown.higher_is_better()


def test_the_command_line_refuses_abbreviations_and_suggests_flags(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        train.main(["--lr-schedule", "cosine"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 2
    assert 'unrecognized arguments: --lr-schedule. Did you mean "--lr-scheduler"?' in err
    assert train.main(["--save-dir", str(tmp_path / "ckpt")]) == 1
    assert "ofasys-train: error: no tasks to train: give a CONFIG.yaml" in capsys.readouterr().err
    assert not (tmp_path / "ckpt").exists()  # a run that fails before its first update leaves nothing


def test_the_run_prints_only_the_options_it_changed(tmp_path, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", [{"src": "a", "tgt": "b"}] * 4)
    assert train.main(["--instruction", "[TEXT:src] -> [TEXT:tgt]", "--data", data, "--arch", "micro",
                       "--max-update", "1", "--num-codes", "0", "--save-dir", str(tmp_path / "ckpt")]) == 0
    out = capsys.readouterr().out
    head = out[:out.index("model: arch")]
    assert head.startswith("# options that differ from the defaults") and "max_update: 1" in head
    assert "seed:" not in head and "lr_scheduler" not in head and len(head.splitlines()) < 20
    assert "linear layers: oneDNN (faster here, set by OFASYS_FS_CPU_LINEAR)" in out  # the suite's setting
