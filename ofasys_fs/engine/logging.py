"""Training logs: meters per task, printed as tqdm/plain/JSON lines, a JSON-lines file and TensorBoard.

Scalar names follow fairseq (loss, nll_loss, ppl, wps, ups, wpb, bsz, gnorm, clip, lr) plus token_accuracy; every
task gets its own set, and the realised task mix is logged beside the requested one.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Callable, Optional

from ..contracts import Criterion
from .config import CommonConfig

Reducer = Callable[[list[dict]], dict[str, float]]


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{value:.3f}"


class TaskMeters:
    """Logging outputs of one task since the last log line, and its micro-batch count since the start."""

    def __init__(self):
        self.logs: list[dict] = []
        self.batches_total = 0

    def add(self, log: dict) -> None:
        self.logs.append(log)
        self.batches_total += 1

    def summary(self, reduce: Reducer, seconds: float) -> dict[str, float]:
        tokens = sum(log.get("ntokens", 0) for log in self.logs)
        stats = reduce(self.logs)
        stats.update(
            wpb=tokens / len(self.logs),
            bsz=sum(log.get("nsentences", 0) for log in self.logs) / len(self.logs),
            wps=tokens / max(seconds, 1e-9),
        )
        self.logs = []
        return stats


class TrainLogger:
    """Collects per-update statistics and writes one record every `log_interval` updates.

    Output: tqdm on a terminal (plain lines otherwise, or JSON with log_format="json") on stdout; every
    record also goes as one JSON line to `jsonl_path` and as scalars to TensorBoard when configured.
    A `quiet` logger (ranks other than 0) keeps the meters but writes nothing anywhere.
    """

    def __init__(self, cfg: CommonConfig, task_names: list[str], requested_mix: list[float],
                 reducers: dict[str, Reducer], max_update: int, jsonl_path: Optional[str], start_update: int = 0,
                 quiet: bool = False):
        self.cfg, self.task_names, self.reducers, self.quiet = cfg, task_names, reducers, quiet
        self.requested_mix = dict(zip(task_names, requested_mix))
        self.tasks = {name: TaskMeters() for name in task_names}
        self.log_format = cfg.log_format or ("tqdm" if sys.stdout.isatty() else "simple")
        self.jsonl_path, self.jsonl = (None if quiet else jsonl_path), None  # opened by the first record
        self.writers = {}
        self.progress = None
        if self.log_format == "tqdm" and not quiet:
            from tqdm import tqdm

            self.progress = tqdm(total=max_update or None, initial=start_update, unit="upd", dynamic_ncols=True,
                                 leave=False)
        self.start_interval()
        self.train_seconds, self.lr = 0.0, 0.0

    def start_interval(self) -> None:
        self.interval_start = time.monotonic()
        self.updates, self.gnorms, self.clipped = 0, [], 0

    def state_dict(self) -> dict:
        """What resumes with the run (unless --reset-meters): the realised mix and the training time."""
        return {
            "batches": {name: meters.batches_total for name, meters in self.tasks.items()},
            "train_seconds": self.train_seconds + time.monotonic() - self.interval_start,
        }

    def load_state_dict(self, state: dict) -> None:
        for name, count in state.get("batches", {}).items():
            if name in self.tasks:
                self.tasks[name].batches_total = int(count)
        self.train_seconds = float(state.get("train_seconds", 0.0))

    def add_batch(self, task: str, log: dict) -> None:
        """One micro-batch's logging output (plain numbers, unweighted by the task weight)."""
        self.tasks[task].add(log)

    def add_update(self, num_updates: int, gnorm: float, clipped: bool, lr: float, epoch: int) -> None:
        """Called after each optimizer step; writes a record every log_interval updates."""
        self.updates += 1
        self.gnorms.append(gnorm)
        self.clipped += int(clipped)
        self.lr = lr
        if self.progress is not None:
            logs = [log for meters in self.tasks.values() for log in meters.logs]
            loss = Criterion.reduce_metrics(logs)["loss"]
            self.progress.set_postfix_str(f"loss {format_value(loss)}, lr {lr:.3g}", refresh=False)
            self.progress.update(1)
        if num_updates % self.cfg.log_interval == 0:
            self.write_train(num_updates, epoch)

    def realised_mix(self) -> dict[str, float]:
        total = sum(meters.batches_total for meters in self.tasks.values())
        return {name: meters.batches_total / max(total, 1) for name, meters in self.tasks.items()}

    def write_train(self, num_updates: int, epoch: int) -> None:
        if not self.updates:
            return
        seconds = time.monotonic() - self.interval_start
        mix = self.realised_mix()
        tasks = {}
        all_logs = []
        for name, meters in self.tasks.items():
            if meters.logs:
                all_logs += meters.logs
                tasks[name] = meters.summary(self.reducers[name], seconds)
            else:
                tasks[name] = {}
            tasks[name].update(mix=mix[name], mix_requested=self.requested_mix[name])
        tokens = sum(log.get("ntokens", 0) for log in all_logs)
        record = {
            "update": num_updates, "epoch": epoch, **Criterion.reduce_metrics(all_logs),
            "wps": tokens / max(seconds, 1e-9), "ups": self.updates / max(seconds, 1e-9),
            "wpb": tokens / self.updates,
            "bsz": sum(log.get("nsentences", 0) for log in all_logs) / self.updates,
            "gnorm": sum(self.gnorms) / len(self.gnorms), "clip": self.clipped / self.updates, "lr": self.lr,
        }
        self.train_seconds += seconds
        self.start_interval()
        self.write("train", record, tasks)

    def write_valid(self, num_updates: int, epoch: int, results: dict[str, dict[str, float]],
                    best: Optional[float]) -> None:
        """Validation results {task: {metric: value}} and the best value of the checkpoint metric so far."""
        record = {"update": num_updates, "epoch": epoch}
        if best is not None:
            record["best"] = best
        self.write("valid", record, results)

    def write(self, split: str, record: dict, tasks: dict[str, dict]) -> None:
        record = {"split": split, **record, "tasks": tasks}
        if self.jsonl is None and self.jsonl_path is not None:
            self.jsonl = open_jsonl(self.jsonl_path)
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(record) + "\n")
            self.jsonl.flush()
        self.write_tensorboard(split, record)
        if self.log_format == "json":
            self.info(json.dumps(record))
        else:
            self.info(plain_line(record))

    def write_tensorboard(self, split: str, record: dict) -> None:
        if not self.cfg.tensorboard_logdir or self.quiet:
            return
        if split not in self.writers:
            from torch.utils.tensorboard import SummaryWriter

            self.writers[split] = SummaryWriter(os.path.join(self.cfg.tensorboard_logdir, split))
        writer, step = self.writers[split], record["update"]
        for key, value in record.items():
            if key not in ("split", "update", "tasks"):
                writer.add_scalar(key, value, step)
        for task, stats in record["tasks"].items():
            for key, value in stats.items():
                writer.add_scalar(f"{task}/{key}", value, step)
        writer.flush()

    def info(self, text: str) -> None:
        """One line for the user (through tqdm when a progress bar is showing)."""
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        for writer in self.writers.values():
            writer.close()
        if self.jsonl is not None:
            self.jsonl.close()


def open_jsonl(path: str):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return open(path, "a", encoding="utf-8")


def plain_line(record: dict) -> str:
    """`train | epoch 1 | update 10 | loss 5.2 | ... || caption: loss 5.1 | mix 0.52/0.50 || vqa: ...`"""
    head = [record["split"]] + [
        f"{key} {format_value(value)}" for key, value in record.items() if key not in ("split", "tasks")
    ]
    parts = [" | ".join(head)]
    for task, stats in record["tasks"].items():
        shown = {k: v for k, v in stats.items() if k not in ("mix", "mix_requested")}
        fields = [f"{key} {format_value(value)}" for key, value in shown.items()]
        if "mix" in stats:
            fields.append(f"mix {stats['mix']:.2f}/{stats['mix_requested']:.2f}")
        parts.append(f"{task}: " + " | ".join(fields))
    return " || ".join(parts)

