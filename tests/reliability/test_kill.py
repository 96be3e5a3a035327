"""Kill at any point (docs/reliability.md, guarantee 2): 20 trials SIGKILL ofasys-train at random moments (four
of them in the middle of a checkpoint write) and ofasys-preprocess at random moments. After each kill every
checkpoint left behind loads with weights_only, the same command resumes to the parameters of the
uninterrupted reference run (within 1e-6), and a killed preprocess left no manifest, unless it had already
finished (then its shard is complete); running it again gives the reference shard.

The killed commands run in processes forked from a pre-imported server (tests/reliability/forked.py) so that 20
trials fit the time budget; tests/test_distributed.py kills real torchrun launches with 2 ranks the same way.
"""
import json
import random
import time

import pytest
from test_distributed import assert_all_checkpoints_load, assert_same_weights

from ofasys_fs.checkpoint import load_checkpoint
from ofasys_fs.cli.preprocess import main as preprocess_main
from ofasys_fs.cli.train import main as train_main
from ofasys_fs.data.shards import MANIFEST, ShardDataset

from .conftest import COPY, MAX_UPDATE, copy_rows, write_jsonl
from .forked import ForkedCommand

SAVES = MAX_UPDATE // 3  # checkpoint writes of the micro run (save_interval_updates 3)
SLOW_SAVE_SECONDS = 0.3
PREPROCESS_ROWS = 3000
TRIALS = ([f"training-{i}" for i in range(12)] + [f"checkpoint-write-{i}" for i in range(4)]
          + [f"preprocess-{i}" for i in range(4)])


def resume_and_compare(micro, reference, save_dir) -> None:
    """Every checkpoint left loads; the same command continues to the reference parameters."""
    assert_all_checkpoints_load(save_dir)
    last = save_dir / "checkpoint_last.pt"
    saved_at = load_checkpoint(str(last))["train_meta"]["num_updates"] if last.exists() else 0
    assert saved_at < MAX_UPDATE, "the run finished before the kill: the trial killed nothing"
    assert train_main(micro.argv(save_dir)) == 0
    assert not list(save_dir.glob("*.tmp"))
    assert_all_checkpoints_load(save_dir)
    assert_same_weights(last, reference, atol=1e-6)


@pytest.mark.parametrize("trial", [t for t in TRIALS if t.startswith("training")])
def test_training_killed_at_a_random_moment_resumes_to_the_reference(micro, reference, tmp_path, trial):
    rng = random.Random(trial)
    progress, save_dir = tmp_path / "progress", tmp_path / "run"
    progress.mkdir()
    run = ForkedCommand("train", micro.argv(save_dir), tmp_path / "killed.log", {"PROBE_PROGRESS": str(progress)})
    batches = rng.randrange(MAX_UPDATE - 2)  # 0: during start-up; at most 9, so the kill lands before the end
    if batches:
        run.wait_for(progress / f"rank0_batch_{batches}")
    time.sleep(rng.uniform(0, 0.03) if batches else rng.uniform(0, 0.5))
    run.kill()
    assert run.returncode == -9, run.output()[-2000:]
    resume_and_compare(micro, reference, save_dir)


@pytest.mark.parametrize("trial", [t for t in TRIALS if t.startswith("checkpoint-write")])
def test_training_killed_inside_a_checkpoint_write_keeps_the_previous_one(micro, reference, tmp_path, trial):
    rng = random.Random(trial)
    saves, save_dir = tmp_path / "saves", tmp_path / "run"
    saves.mkdir()
    env = {"PROBE_SLOW_SAVE": str(saves), "PROBE_SLOW_SAVE_SECONDS": str(SLOW_SAVE_SECONDS)}
    run = ForkedCommand("train", micro.argv(save_dir), tmp_path / "killed.log", env)
    run.wait_for(saves / f"save_{rng.randint(1, SAVES)}")
    time.sleep(rng.uniform(0, SLOW_SAVE_SECONDS * 0.8))
    run.kill()
    assert list(save_dir.glob("checkpoint_last.pt.*.tmp")), "the kill did not land inside a checkpoint write"
    resume_and_compare(micro, reference, save_dir)


@pytest.fixture(scope="module")
def preprocess_input(tmp_path_factory):
    """Rows to shard, the command's arguments minus --destdir, the reference shard and its duration (forked)."""
    root = tmp_path_factory.mktemp("preprocess")
    rows = write_jsonl(root / "rows.jsonl", copy_rows(PREPROCESS_ROWS))
    arguments = ["--input", str(rows), "--instruction", COPY]
    run = ForkedCommand("preprocess", [*arguments, "--destdir", root / "reference"], root / "reference.log")
    started = time.monotonic()  # once forked: the first start also starts the fork server
    assert run.finish() == 0, run.output()
    return arguments, root / "reference", time.monotonic() - started


def assert_same_shard(folder, reference) -> None:
    splits = [json.loads((shard / MANIFEST).read_text())["splits"] for shard in (folder, reference)]
    assert splits[0] == splits[1]
    assert list(ShardDataset(folder, "train")) == list(ShardDataset(reference, "train"))


@pytest.mark.parametrize("trial", [t for t in TRIALS if t.startswith("preprocess")])
def test_preprocess_killed_at_a_random_moment_publishes_nothing_partial(preprocess_input, tmp_path, trial):
    arguments, reference, duration = preprocess_input
    rng = random.Random(trial)
    destdir = tmp_path / "shards"
    workers = ["--workers", "2"] if trial.endswith("-3") else []
    run = ForkedCommand("preprocess", [*arguments, *workers, "--destdir", destdir], tmp_path / "killed.log")
    time.sleep(rng.uniform(0, duration))
    run.kill()  # the command and its worker processes
    if (destdir / MANIFEST).exists():  # it had finished: the manifest is only written after every row
        assert run.returncode in (0, -9)
        assert_same_shard(destdir, reference)
    assert preprocess_main([*arguments, "--destdir", str(destdir)]) == 0
    assert_same_shard(destdir, reference)
