"""Command-line runs in child processes that a test may SIGKILL at any moment, without paying for Python's and
torch's imports in every run: the children are forked from multiprocessing's forkserver, which imports the
toolkit once. A child runs `ofasys_fs.cli.<name>.main(argv)`, the real command, with its output in a log file.
"""
import importlib
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence

import pytest
from test_distributed import process_tree

PRELOAD = ["torch", "torch._dynamo",  # the optimizer imports torch._dynamo: 2 s per run if not preloaded
           "ofasys_fs.preprocess", "ofasys_fs.adaptors", "ofasys_fs.models", "ofasys_fs.criteria",
           "ofasys_fs.generators", "ofasys_fs.metrics", "ofasys_fs.tasks", "ofasys_fs.engine.trainer",
           "ofasys_fs.inference.evaluate", "ofasys_fs.cli.train", "ofasys_fs.cli.preprocess"]


def run_main(module: str, argv: list, env: dict, log: str) -> None:
    """The child: environment, output to `log`, one torch thread, then the command's main(argv) as exit code."""
    os.environ.update(env)
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    import torch

    torch.set_num_threads(1)
    sys.exit(importlib.import_module(module).main(argv))


def forkserver() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)  # only takes effect if the server is not running yet
    return context


class ForkedCommand:
    """`ofasys_fs.cli.<command>.main(argv)` in a forked child; output collected in `log`."""

    def __init__(self, command: str, argv: Sequence[str], log: Path, env: Optional[Mapping[str, str]] = None):
        self.log = Path(log)
        self.process = forkserver().Process(
            target=run_main, args=(f"ofasys_fs.cli.{command}", [str(a) for a in argv], dict(env or {}), str(log)))
        self.process.start()
        self.pid = self.process.pid

    @property
    def returncode(self) -> Optional[int]:
        """The exit code; -9 after SIGKILL; None while running."""
        return self.process.exitcode

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def finish(self, timeout: float = 60) -> int:
        """Wait for the command to end by itself; returns its exit code."""
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.kill()
            pytest.fail(f"the command did not end within {timeout} s:\n{self.output()[-3000:]}")
        return self.process.exitcode

    def kill(self) -> None:
        """SIGKILL the command and every process it started: nothing of it runs after this, as in a crash."""
        for pid in reversed(process_tree(self.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.join()

    def wait_for(self, path: Path, timeout: float = 60) -> None:
        """Return once `path` exists; fail the test when the command ends first or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not path.exists():
            if self.process.exitcode is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"{path.name} did not appear (exit code {self.process.exitcode}):\n{self.output()[-3000:]}")
            time.sleep(0.005)
