"""Many processes (docs/design.md §9, docs/distributed.md). With 2 CPU ranks (gloo), under `torchrun --nproc_per_node 2`
or started directly with RANK/WORLD_SIZE/MASTER_* (cheaper): DDP equals one process with the global batch;
two torchrun "nodes" on one machine train with FSDP2, equal to it too, with one writer; a save_dir that is
not shared is refused; SIGKILL in the middle of training and during a checkpoint write, then the same command
again, ends where an uninterrupted run ends. The helpers, no_c10d's all-reduce and FSDP2 with one rank run
in-process.

Ranks are observed through the --user-dir plugin of the reliability tests (plugins are the real extension
mechanism; the trainer has no test hooks): its criterion appends a digest of the parameters it trains to a file
per rank, and it can slow down steps or pause halfway through a checkpoint write, so that a test can kill the
run there.
"""
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from PIL import Image

from ofasys_fs.checkpoint import load_checkpoint
from ofasys_fs.cli.train import main as train_main
from ofasys_fs.engine.batches import Cursor, TaskBatchPlan
from ofasys_fs.engine.distributed import (
    Distributed,
    World,
    all_reduce_bucket,
    check_backend,
    free_port,
    merge_rank_outputs,
    parameter_buckets,
    world_from_env,
)
from ofasys_fs.engine.state import checkpoint_rng, remove_stale_temp_files, rng_state, set_rng_state
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.tasks.base import Task
from ofasys_fs.tokenizer import train_tokenizer

REPO = Path(__file__).resolve().parents[1]
WORDS = "zero one two three four five six seven eight nine red green blue what is the colour copy".split()
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
KILL_RUN = ("max_update=12", "save_interval_updates=3", "dropout=0.1")  # the resumed runs and their reference
# 2 ranks vs one process: 1e-5 of each tensor's scale, plus 1e-7 (a ten-thousandth of one AdamW step at lr 1e-3)
# for the tensors that are mostly Adam steps (biases that start at 0), where other summation orders of the
# same sums leave float noise; a real error (a row counted twice or left out) moves weights by ~1e-4 (a wrong
# gradient normaliser hardly does, AdamW and clipping undo scale: assert_same_log compares the gradient norm)
GLOBAL_BATCH_TOLERANCE = dict(rtol=1e-5, atol=1e-7)
# The conv stem's convolutions: BatchNorm's backward amplifies summation order. One process whose batch sums are
# taken in two halves (the same maths) moves them by 1.2e-6, twice the bound above; ranks that normalise by their
# own rows instead of the global batch's move them by 5e-3. So 1e-4 of their scale, for them only.
STEM_TOLERANCE = {"encoder.adaptors.image_patch.proj.convs.": dict(rtol=1e-4, atol=1e-7)}

PROBE_PLUGIN = REPO / "tests" / "reliability" / "reliability_probe"  # probe_ce: digests, slow steps and saves


def colour_image(rgb: tuple, seed: int) -> np.ndarray:
    """A 32 px image of one colour with a fixed grain. Over images of one flat colour the conv stem's BatchNorm
    sees near-degenerate statistics, and its backward then turns float summation order into differences of 1e-3
    in the weights (FSDP2 against the plain trainer); with the grain they are float noise again (1e-5)."""
    grain = np.random.default_rng(seed).integers(-40, 41, (32, 32, 3))
    return np.clip(np.array(rgb) + grain, 0, 255).astype(np.uint8)


@dataclasses.dataclass
class RunFiles:
    root: Path
    config: Path  # YAML: colour (image) + copy (text) tasks, micro arch, batch_size 4, update_freq 2, 5 updates

    def validation(self) -> tuple:
        """Overrides that validate copy at the end: loss and exact_match of short beam-2 decodes."""
        return (f"tasks.1.valid_data={self.root / 'copy.jsonl'}", "tasks.1.metric=exact_match", "beam=2",
                "max_len_b=4")


@dataclasses.dataclass
class Reference:
    save_dir: Path
    digests: Path  # rank0.txt, rank1.txt


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> RunFiles:
    root = tmp_path_factory.mktemp("distributed")
    train_tokenizer([" ".join(WORDS)] * 20, 300, root / "tokenizer.json")
    with open(root / "copy.jsonl", "w", encoding="utf-8") as handle:  # 20 rows: the last global batch of 8 is short
        for i in range(20):
            handle.write(json.dumps({"src": f"{WORDS[i % 10]} {WORDS[i * 3 % 10]}", "tgt": WORDS[i % 10]}) + "\n")
    with open(root / "colour.jsonl", "w", encoding="utf-8") as handle:
        for i in range(12):
            name = list(COLOURS)[i % 3]
            Image.fromarray(colour_image(COLOURS[name], i)).save(root / f"colour_{i}.png")
            handle.write(json.dumps({"img": f"colour_{i}.png", "label": name}) + "\n")
    # adam_eps 1e-6: attention key biases get (mathematically zero) rounding-noise gradients, which Adam with
    # eps 1e-8 would blow up to full-size steps and make any two summation orders disagree. The conv patch stem:
    # its BatchNorm must normalise by the statistics of the global batch, not of each rank's rows
    config = root / "config.yaml"
    config.write_text(f"""
common: {{seed: 3, device: cpu, log_interval: 1, user_dir: [{PROBE_PLUGIN}]}}
dataset: {{batch_size: 4}}
optimization: {{max_update: 5, lr: 1.0e-3, adam_eps: 1.0e-6, update_freq: 2, sampling: round_robin}}
model: {{arch: micro, dropout: 0.0, patch_stem: conv}}
checkpoint: {{save_interval_updates: 1000}}
vocab: {{tokenizer: {root}/tokenizer.json, num_bins: 16, num_codes: 0}}
tasks:
  - {{name: colour, instruction: "[IMAGE:img] what is the colour? -> [TEXT:label]", data: {root}/colour.jsonl,
      options: {{criterion: probe_ce}}}}
  - {{name: copy, instruction: "copy [TEXT:src] -> [TEXT:tgt]", data: {root}/copy.jsonl,
      options: {{criterion: probe_ce}}}}
""")
    return RunFiles(root, config)


def environment(**extra: str) -> dict:
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1", **extra}


def train_command(files: RunFiles, save_dir: Path, overrides: tuple) -> list[str]:
    return ["-m", "ofasys_fs.cli.train", str(files.config), f"save_dir={save_dir}", *overrides]


class Run:
    """Launched training processes (torchrun launchers, or ranks started directly) with their output."""

    def __init__(self, commands: list[list[str]], envs: list[dict]):
        self.processes = [subprocess.Popen([sys.executable, *command], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True) for command, env in zip(commands, envs)]

    def outputs(self, timeout: float = 90) -> list[str]:
        return [process.communicate(timeout=timeout)[0] for process in self.processes]

    def finish(self) -> list[str]:
        """Wait for every process; fails the test with the output of a process that failed."""
        outputs = self.outputs()
        for process, output in zip(self.processes, outputs):
            assert process.returncode == 0, output[-4000:]
        return outputs

    def running(self) -> bool:
        return all(process.poll() is None for process in self.processes)

    def kill(self) -> None:
        """SIGKILL every process and its children (a crashed machine; torchrun gives each rank its own session)."""
        for process in self.processes:
            for pid in reversed(process_tree(process.pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.outputs()

    def wait_for(self, path: Path, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if not self.running():
                self.kill()
                pytest.fail(f"the run ended before {path.name} appeared")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"{path} did not appear within {timeout} s")
            time.sleep(0.02)


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, parents first (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError):
            continue
    tree, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        tree.append(pid)
        frontier += [child for child, parent in parents.items() if parent == pid]
    return tree


def torchrun(files: RunFiles, save_dirs: tuple, *overrides: str, nodes: int = 1, **extra_env: str) -> Run:
    """`torchrun --standalone --nproc_per_node 2 -m ofasys_fs.cli.train CONFIG save_dir=... overrides`, or with
    nodes=2 two torchrun "nodes" of one rank each meeting at 127.0.0.1 (static rendezvous; node 0 hosts)."""
    base = ["-m", "torch.distributed.run", "--monitor-interval", "0.1"]
    if nodes == 1:
        launches = [["--standalone", "--nproc_per_node", "2"]]
    else:
        endpoint = f"127.0.0.1:{free_port()}"
        launches = [["--nnodes", "2", "--node_rank", str(node), "--nproc_per_node", "1", "--rdzv-endpoint", endpoint]
                    for node in range(nodes)]
    commands = [base + launch + train_command(files, save_dir, overrides) for launch, save_dir in zip(launches, save_dirs)]
    return Run(commands, [environment(**extra_env)] * nodes)


def ranks(files: RunFiles, save_dirs: tuple, *overrides: str, **extra_env: str) -> Run:
    """Two ranks started directly with RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* set, as a cluster scheduler (or
    torchrun) does; cheaper than torchrun for the runs that only need two ranks."""
    port = str(free_port())
    return Run([train_command(files, save_dir, overrides) for save_dir in save_dirs],
               [environment(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                            MASTER_PORT=port, **extra_env) for rank in range(2)])


def weights(path: Path) -> dict:
    return load_checkpoint(str(path))["model"]


def assert_same_weights(path: Path, reference: Path, rtol: float = 0.0, atol: float = 0.0,
                        per_prefix: Optional[dict] = None) -> None:
    """Every tensor within atol + rtol x (the reference tensor's largest magnitude); `per_prefix`: other
    tolerances (rtol, atol) for the tensors whose names start with a key."""
    got, want = weights(path), weights(reference)
    assert got.keys() == want.keys()
    for name, value in want.items():
        error = float((got[name].float() - value.float()).abs().max()) if value.numel() else 0.0
        tolerance = next((t for prefix, t in (per_prefix or {}).items() if name.startswith(prefix)),
                         dict(rtol=rtol, atol=atol))
        bound = tolerance["atol"] + tolerance["rtol"] * float(value.abs().max() if value.numel() else 0)
        assert error <= bound, f"{name}: differs by {error:.3g} (allowed {bound:.3g})"


def assert_same_log(save_dir: Path, reference_dir: Path) -> None:
    """The logged statistics equal: batch sizes and losses summed over the ranks, and the gradient norm (AdamW
    with clipping hardly sees a wrong gradient normaliser in the weights; gnorm shows it)."""
    logs = [read_log(folder, "train") for folder in (save_dir, reference_dir)]
    assert [r["bsz"] for r in logs[0]] == [r["bsz"] for r in logs[1]]
    for key in ("loss", "gnorm"):
        assert [r[key] for r in logs[0]] == pytest.approx([r[key] for r in logs[1]], rel=1e-5), key


def read_log(save_dir: Path, split: str) -> list[dict]:
    with open(save_dir / "train_log.jsonl", encoding="utf-8") as handle:
        return [record for record in map(json.loads, handle) if record["split"] == split]


def assert_all_checkpoints_load(save_dir: Path) -> list:
    names = sorted(path.name for path in save_dir.glob("*.pt"))
    for name in names:
        load_checkpoint(str(save_dir / name))  # weights_only; raises on a truncated file
    return names


def read_digests(folder: Path) -> list[list[str]]:
    return [(folder / f"rank{rank}.txt").read_text().split() for rank in (0, 1)]


@pytest.fixture(scope="module")
def one_process(files, tmp_path_factory) -> Path:
    """The single-process run with the global batch (2 x 4) that the 2-rank runs must equal."""
    save_dir = tmp_path_factory.mktemp("one_process")
    assert train_main([str(files.config), f"save_dir={save_dir}", "batch_size=8", *files.validation()]) == 0
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def uninterrupted(files, tmp_path_factory) -> Reference:
    """The 2-rank reference of the resume tests (dropout on: every rank's RNG stream matters); records digests."""
    reference = Reference(tmp_path_factory.mktemp("uninterrupted"), tmp_path_factory.mktemp("digests"))
    ranks(files, (reference.save_dir,) * 2, *KILL_RUN, PROBE_DIGESTS=str(reference.digests)).finish()
    return reference


# ---- 2 ranks ------------------------------------------------------------------------------------


def test_two_ddp_ranks_stay_identical_and_equal_one_process_with_the_global_batch(files, one_process, tmp_path):
    digests = tmp_path / "digests"
    digests.mkdir()
    output, = torchrun(files, (tmp_path / "run",), *files.validation(), PROBE_DIGESTS=str(digests)).finish()
    assert "DDP (c10d) over 2 ranks, find_unused_parameters True" in output  # copy batches leave image_patch unused
    assert_same_weights(tmp_path / "run" / "checkpoint_last.pt", one_process, **GLOBAL_BATCH_TOLERANCE,
                        per_prefix=STEM_TOLERANCE)
    rank0, rank1 = read_digests(digests)
    # every forward on both ranks saw the same weights: those before each of the 5 updates, and (validation
    # after update 5) the final ones
    assert rank0 == rank1 and len(set(rank0)) == 6
    assert_same_log(tmp_path / "run", one_process.parent)
    valid = [read_log(folder, "valid")[-1]["tasks"]["copy"] for folder in (tmp_path / "run", one_process.parent)]
    assert valid[0]["loss"] == pytest.approx(valid[1]["loss"], rel=1e-5)  # every rank: the whole valid split
    assert valid[0]["exact_match"] == valid[1]["exact_match"]  # decoded on both ranks, gathered, merged by row


def test_two_nodes_on_one_machine_train_fsdp2_with_one_writer(files, one_process, tmp_path):
    outputs = torchrun(files, (tmp_path, tmp_path), "ddp_backend=fully_sharded", nodes=2).finish()
    assert "FSDP2 (fully_sharded) over 2 ranks" in outputs[0]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint_best.pt", "checkpoint_last.pt",
                                                                "train_log.jsonl"]  # best = last: no valid split
    assert len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 5  # one writer, one line per update
    assert "train | update 5" in outputs[0] and "train |" not in outputs[1]
    assert_same_weights(tmp_path / "checkpoint_last.pt", one_process, **GLOBAL_BATCH_TOLERANCE,
                        per_prefix=STEM_TOLERANCE)
    assert_same_log(tmp_path, one_process.parent)
    sharded, reference = (load_checkpoint(str(path))["optimizer"]["state"]
                          for path in (tmp_path / "checkpoint_last.pt", one_process))
    for index, state in reference.items():  # one format whatever the backend: full tensors by parameter index
        assert sharded[index]["exp_avg"].shape == state["exp_avg"].shape


def test_a_save_dir_that_is_not_shared_is_refused_on_every_rank(files, tmp_path):
    run = ranks(files, (tmp_path / "node0", tmp_path / "node1"))
    for process, output, folder in zip(run.processes, run.outputs(), ("node0", "node1")):
        assert process.returncode == 1
        assert f"save_dir '{tmp_path / folder}' is not shared by all ranks: rank(s) [1]" in output
    assert not list(tmp_path.rglob("*.pt"))


# ---- interrupted runs ------------------------------------------------------------------------------


def test_sigkill_mid_training_and_mid_checkpoint_then_resume_equals_the_uninterrupted_run(files, uninterrupted,
                                                                                          tmp_path):
    save_dir = tmp_path / "run"
    first = ranks(files, (save_dir,) * 2, *KILL_RUN, PROBE_STEP_SECONDS="0.05")
    first.wait_for(save_dir / "checkpoint_3.pt")
    delay = random.uniform(0.0, 0.5)
    time.sleep(delay)
    assert first.running(), f"the run ended before the kill (delay {delay:.2f} s)"
    first.kill()
    assert "checkpoint_last.pt" in assert_all_checkpoints_load(save_dir)
    resumed_at = load_checkpoint(str(save_dir / "checkpoint_last.pt"))["train_meta"]["num_updates"]
    assert resumed_at < 12, f"killed after {delay:.2f} s, too late"

    saves = tmp_path / "saves"
    saves.mkdir()
    second = ranks(files, (save_dir,) * 2, *KILL_RUN, PROBE_SLOW_SAVE=str(saves), PROBE_SLOW_SAVE_SECONDS="120")
    second.wait_for(saves / "save_1")
    second.kill()
    assert list(save_dir.glob("checkpoint_last.pt.*.tmp")), "the kill did not interrupt a checkpoint write"
    assert_all_checkpoints_load(save_dir)
    assert load_checkpoint(str(save_dir / "checkpoint_last.pt"))["train_meta"]["num_updates"] == resumed_at

    output, _ = ranks(files, (save_dir,) * 2, *KILL_RUN).finish()
    assert f"resuming from {save_dir / 'checkpoint_last.pt'} at update {resumed_at}" in output
    assert "removed unfinished checkpoint writes" in output and not list(save_dir.glob("*.tmp"))
    assert_all_checkpoints_load(save_dir)
    assert_same_weights(save_dir / "checkpoint_last.pt", uninterrupted.save_dir / "checkpoint_last.pt", atol=1e-6)
    streams = load_checkpoint(str(save_dir / "checkpoint_last.pt"))["rng"]["ranks"]
    assert len(streams) == 2 and not torch.equal(streams[0]["torch"], streams[1]["torch"])  # one per rank


def test_ranks_stay_identical_with_dropout(uninterrupted):
    rank0, rank1 = read_digests(uninterrupted.digests)
    assert rank0 == rank1 and len(rank0) == 24 and len(set(rank0)) == 12


# ---- in-process -----------------------------------------------------------------------------------


def test_world_comes_from_torchrun_environment():
    assert world_from_env({}) == World(0, 1, 0)
    world = world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert world == World(3, 4, 1) and not world.is_main
    with pytest.raises(ValueError, match="RANK=4 and WORLD_SIZE=4"):
        world_from_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ValueError, match="WORLD_SIZE='two' must be an integer"):
        world_from_env({"WORLD_SIZE": "two"})


def test_ranks_split_each_global_batch_and_pad_an_epoch_end_with_a_dummy():
    single = TaskBatchPlan("t", 10, seed=1, batch_size=8)
    plan = TaskBatchPlan("t", 10, seed=1, batch_size=4, world_size=2)
    assert [b.tolist() for b in plan.batches(0)] == [b.tolist() for b in single.batches(0)]
    steps = plan.epoch_index(0)[0]
    assert [len(batch) for step in steps for batch in step] == [4, 4, 2]  # the last step has no batch for rank 1
    keys = [plan.keys_from(Cursor(), rank) for rank in (0, 1)]
    first = [next(keys[0]), next(keys[1])]
    assert [row for row, _ in first[0] + first[1]] == steps[0][0].tolist() + steps[0][1].tolist()
    second = [next(keys[0]), next(keys[1])]
    assert second[1] == second[0]  # rank 1 repeats rank 0's rows as a dummy
    cursor = Cursor()
    plan.advance(cursor)
    assert not plan.is_dummy(cursor, 0) and plan.is_dummy(cursor, 1)


def test_rank_outputs_are_summed_per_micro_batch_and_bad_losses_name_the_rank():
    per_rank = [[("a", 4, {"loss": 2.0, "ntokens": 4}, None), ("b", 3, {"loss": 1.0}, None)],
                [("a", 0, None, None), ("b", 2, {"loss": float("nan")}, [7, 9])]]
    size, logs, bad = merge_rank_outputs(per_rank)
    assert size == 9 and logs[0] == ("a", {"loss": 2.0, "ntokens": 4}) and logs[1][0] == "b"
    assert bad == "task 'b', rows [7, 9] on rank 1"
    assert merge_rank_outputs(per_rank[:1])[2] == ""


def test_each_rank_restores_its_own_rng_stream():
    torch.manual_seed(1)
    first = rng_state()
    torch.manual_seed(2)
    second = rng_state()
    saved = checkpoint_rng([first, second])
    assert set_rng_state(saved, rank=1, world_size=2) and torch.equal(torch.get_rng_state(), second["torch"])
    assert not set_rng_state(saved, rank=0, world_size=3)  # another world size: the caller reseeds
    assert set_rng_state(checkpoint_rng([first])) and torch.equal(torch.get_rng_state(), first["torch"])


def test_stale_temp_files_are_removed_and_unsupported_fsdp_options_refused(tmp_path):
    (tmp_path / "checkpoint_last.pt.x1y2.tmp").write_bytes(b"half")
    (tmp_path / "notes.tmp").write_bytes(b"mine")
    assert remove_stale_temp_files(str(tmp_path)) == ["checkpoint_last.pt.x1y2.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp"]
    with pytest.raises(ValueError, match="fully_sharded does not support fp16 or ema_decay"):
        check_backend("fully_sharded", False, 0.999)


def test_no_c10d_all_reduce_keeps_a_parameter_unused_everywhere_without_gradient():
    dist = Distributed.start(torch.device("cpu"), timeout_s=60, needs_group=True)
    try:
        used, unused, accumulated = (torch.nn.Parameter(torch.ones(3)) for _ in range(3))
        used.grad, accumulated.grad = torch.full((3,), 2.0), torch.full((3,), 5.0)
        for bucket in parameter_buckets([used, unused, accumulated], max_elements=4):
            all_reduce_bucket(bucket)
        assert used.grad.tolist() == [2.0] * 3 and accumulated.grad.tolist() == [5.0] * 3 and unused.grad is None
        assert [len(b) for b in parameter_buckets([used, unused, accumulated], max_elements=4)] == [1, 1, 1]
        assert [len(b) for b in parameter_buckets([used, unused, accumulated], max_elements=6)] == [2, 1]
    finally:
        dist.close()


def micro_options(files: RunFiles, **overrides) -> dict:
    return dict(arch="micro", dropout=0.0, device="cpu", tokenizer=str(files.root / "tokenizer.json"), num_bins=16,
                num_codes=0, batch_size=4, lr=1e-3, adam_eps=1e-6, log_interval=100, seed=3, **overrides)


def colour_task() -> Task:
    rows = [{"img": colour_image(rgb, i), "label": name}
            for i in range(8) for name, rgb in [list(COLOURS.items())[i % 3]]]
    return Task(name="colour", instruction="[IMAGE:img] what is the colour? -> [TEXT:label]").add_dataset(rows, "train")


def test_ddp_searches_for_unused_parameters_only_when_a_task_leaves_an_adaptor_unused(files):
    copy = Task(name="copy", instruction="copy [TEXT:src] -> [TEXT:tgt]").add_dataset([{"src": "a", "tgt": "a"}], "train")
    for tasks, expected in (([colour_task()], False), ([colour_task(), copy], True)):
        trainer = Trainer(**micro_options(files, no_save=True))
        trainer.setup(None, tasks)
        trainer.close()
        assert trainer.find_unused_parameters() is expected
    trainer = Trainer(**micro_options(files, no_save=True, find_unused_parameters=False))
    trainer.setup(None, [colour_task(), copy])
    trainer.close()
    assert trainer.find_unused_parameters() is False  # the config decides when it says


def test_fsdp2_in_one_process_trains_and_resumes_like_the_plain_trainer(files, tmp_path):
    def run(save_dir, max_update, backend):
        options = micro_options(files, save_dir=str(save_dir), max_update=max_update, lr_scheduler="fixed",
                                ddp_backend=backend)
        Trainer(**options).fit(tasks=[colour_task()])
        return save_dir / "checkpoint_last.pt"

    plain = run(tmp_path / "plain", 4, "c10d")
    run(tmp_path / "sharded", 2, "fully_sharded")
    resumed = run(tmp_path / "sharded", 4, "fully_sharded")
    assert_same_weights(resumed, plain, **GLOBAL_BATCH_TOLERANCE)  # its atol: the stem's BatchNorm biases start at 0
    assert not torch.distributed.is_initialized()  # the trainer closed the group it created
