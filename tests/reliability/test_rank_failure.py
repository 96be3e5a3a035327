"""Distributed faults (docs/reliability.md, guarantee 7): when one of 2 CPU (gloo) ranks dies or hangs, the other
stops with one clear line instead of waiting forever: at once when the dead rank's connections close, and within
distributed_timeout when a rank hangs (SIGSTOP: no connection closes, as with a frozen or cut-off machine).

The dead rank is a torchrun "node" of its own (tests/test_distributed.py's launcher), as on a real cluster where
each node's agent only watches its own ranks; the hanging rank is started the way a scheduler starts ranks (RANK,
WORLD_SIZE, MASTER_ADDR, ... in the environment), forked from a pre-imported server to save start-up time.
"""
import os
import re
import signal
import time

from test_distributed import RunFiles, free_port, process_tree, torchrun

from .forked import ForkedCommand

TIMEOUT_S = 5  # distributed_timeout of these runs
ENDLESS = ("max_update=100000", "save_interval_updates=100000", "validate_interval_updates=100000",
           "log_interval=100000", f"distributed_timeout={TIMEOUT_S}")
LOST = "ofasys-train: error: rank {rank} of 2 lost contact with the other ranks ("


def test_when_a_rank_dies_the_other_stops_with_a_clear_error(micro, tmp_path):
    progress = tmp_path / "progress"
    progress.mkdir()
    run = torchrun(RunFiles(micro.root, micro.config), (tmp_path / "run",) * 2, *ENDLESS, nodes=2,
                   PROBE_PROGRESS=str(progress))
    try:
        run.wait_for(progress / "rank1_batch_3")
        dead = process_tree(run.processes[1].pid)[1]  # node 1's rank, not its torchrun agent
        os.kill(dead, signal.SIGKILL)
        started = time.monotonic()
        output, _ = run.processes[0].communicate(timeout=TIMEOUT_S + 30)
        elapsed = time.monotonic() - started
    finally:
        run.kill()
    assert run.processes[0].returncode != 0
    assert LOST.format(rank=0) in output and " by peer" in output, output[-3000:]
    assert "[rank0]: Traceback" not in output  # the rank's own error is the one line (torchrun then reports it)
    assert elapsed < TIMEOUT_S + 30


def test_when_a_rank_hangs_the_other_stops_within_the_timeout(micro, tmp_path):
    progress, port = tmp_path / "progress", str(free_port())
    progress.mkdir()
    ranks = [ForkedCommand("train", micro.argv(tmp_path / "run", *ENDLESS), tmp_path / f"rank{rank}.log",
                           {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                            "MASTER_PORT": port, "PROBE_PROGRESS": str(progress)})
             for rank in range(2)]
    try:
        ranks[1].wait_for(progress / "rank1_batch_3")
        os.kill(ranks[1].pid, signal.SIGSTOP)
        started = time.monotonic()
        code = ranks[0].finish(timeout=TIMEOUT_S + 20)
        elapsed = time.monotonic() - started
    finally:
        for rank in ranks:
            rank.kill()
    output = ranks[0].output()
    reason = re.search(re.escape(LOST.format(rank=0)) + r"(.*?)\): another rank died", output)
    assert code == 1 and reason, output[-3000:]
    assert re.search("timed out|timeout", reason.group(1), re.IGNORECASE), reason.group(0)  # gloo words it two ways
    assert f"distributed_timeout ({TIMEOUT_S} s)" in output and "Traceback" not in output
    assert TIMEOUT_S - 1 < elapsed < TIMEOUT_S + 15
