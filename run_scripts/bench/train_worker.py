"""One training process for busy_bench.py and scale_bench.py: a micro model on synthetic tasks of equal size,
made in memory, trained by `Trainer.fit` for a fixed time; its log records (JSON lines) go to stdout.

    python -m run_scripts.bench.train_worker --tasks 3 [--image] [--threads N] [--workers W] [--seconds S]

`launch` starts one in its own process group; `TrainingRun.updates_per_second` reads its log records.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Optional

import numpy as np

WORDS = ("zero one two three four five six seven eight nine red green blue black white square circle "
         "triangle small large left right up down").split()
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 70, 230), "yellow": (240, 220, 40)}
ROWS_PER_TASK = 256
LOG_INTERVAL = 5
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def text_rows(task: int, count: int) -> list[dict]:
    """Rows of one text task: 6-10 words in, the words of the task's pattern out."""
    rng = np.random.default_rng(task)
    rows = []
    for _ in range(count):
        words = [WORDS[i] for i in rng.integers(0, len(WORDS), rng.integers(6, 11))]
        rows.append({"src": " ".join(words), "tgt": " ".join(words[task % 3::3])})
    return rows


def colour_rows(count: int) -> list[dict]:
    names = list(COLOURS)
    return [{"img": np.full((32, 32, 3), COLOURS[names[i % len(names)]], dtype=np.uint8), "label": names[i % len(names)]}
            for i in range(count)]


def synthetic_tasks(count: int, image: bool = False, rows: int = ROWS_PER_TASK) -> list:
    """`count` tasks of `rows` rows each: text tasks with their own instruction, the last an image task with
    `image`."""
    from ofasys_fs.tasks.base import Task

    tasks = [Task(name=f"text{i}", instruction=f"task {i}: pick words of [TEXT:src] -> [TEXT:tgt]")
             .add_dataset(text_rows(i, rows), "train") for i in range(count - int(image))]
    if image:
        tasks.append(Task(name="colour", instruction="[IMAGE:img] what is the colour? -> [TEXT:label]")
                     .add_dataset(colour_rows(rows), "train"))
    return tasks


class TimeUp(Exception):
    """The worker's training time is over."""


def train(tasks: int, image: bool, threads: Optional[int], workers: int, seconds: float) -> None:
    from ofasys_fs.engine.trainer import Trainer

    def stop(signum, frame):
        raise TimeUp

    signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    trainer = Trainer(arch="micro", device="cpu", max_update=10**7, batch_size=16, lr=1e-3, threads=threads,
                      num_workers=workers, no_save=True, disable_validation=True, log_interval=LOG_INTERVAL,
                      log_format="json", num_codes=0, num_bins=16, seed=1)
    try:
        trainer.fit(tasks=synthetic_tasks(tasks, image))
    except TimeUp:
        pass


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--image", action="store_true", help="make the last task an image task")
    parser.add_argument("--threads", type=int, help="--threads of the training config (default: unset)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers per task")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    train(args.tasks, args.image, args.threads, args.workers, args.seconds)


class TrainingRun:
    """A worker process started now; its train records are collected with the time they arrived."""

    def __init__(self, tasks: int, image: bool, threads: Optional[int], workers: int, seconds: float):
        env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}  # torch's own default
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "run_scripts.bench.train_worker", "--tasks", str(tasks),
                   "--workers", str(workers), "--seconds", str(seconds), *(["--image"] if image else []),
                   *(["--threads", str(threads)] if threads else [])]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=env, cwd=ROOT, start_new_session=True)
        self.started, self.records, self.other_lines = time.monotonic(), [], []
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        for line in self.process.stdout:
            arrived = time.monotonic() - self.started
            try:
                record = json.loads(line)
            except ValueError:
                self.other_lines.append(line.rstrip())
                continue
            if isinstance(record, dict) and record.get("split") == "train":
                self.records.append((arrived, record))

    def wait(self, timeout: float) -> None:
        """Wait for the worker to end (it stops itself); end its process group after `timeout` seconds."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.reader.join(timeout=10)
        if self.process.returncode not in (0, -signal.SIGKILL) or not self.records:
            tail = "\n".join(self.other_lines[-15:])
            raise RuntimeError(f"training worker exited with {self.process.returncode} after "
                               f"{len(self.records)} records:\n{tail}")

    def updates_per_second(self, after: float) -> float:
        """Updates per second over the records that arrived `after` seconds or later from the start."""
        late = [record for arrived, record in self.records if arrived >= after]
        if not late:
            raise RuntimeError(f"no log record after {after} s (the worker made {len(self.records)} in all); "
                               f"train longer")
        return len(late) * LOG_INTERVAL / sum(LOG_INTERVAL / record["ups"] for record in late)


if __name__ == "__main__":
    main()
