"""Seconds per update of data-parallel training with one-task batches that leave an adaptor unused, by how
the unused parameters are handled (docs/distributed.md has the numbers):

    find_unused      DDP with find_unused_parameters=True (what "auto" picks when tasks feed different adaptors)
    zero_sum         DDP without it; every loss gets + 0 * sum(parameters of the adaptors the task does not feed)
    no_c10d          no DDP wrapper; one flat all-reduce of the gradients after the backward passes
    text_only        reference: one text task, every parameter used, DDP without the search
    text_only_find   the same with find_unused_parameters=True (the search's pure cost)

Run under torchrun:  torchrun --nproc_per_node 2 run_scripts/bench/ddp_step_time.py [--arch micro] [--updates 30]
Prints one `RESULT variant=<name> s_per_update=<x>` line per variant on rank 0 (best of --repeats).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist

from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.tasks.base import Task

WORDS = "zero one two three four five six seven eight nine red green blue what is the colour copy".split()
VARIANTS = ("find_unused", "zero_sum", "no_c10d", "text_only", "text_only_find")


def make_tasks(with_images: bool, rows: int = 64) -> list[Task]:
    copy = [{"src": " ".join(WORDS[(i + k) % 10] for k in range(6)), "tgt": WORDS[i % 10]} for i in range(rows)]
    tasks = [Task(name="copy", instruction="copy [TEXT:src] -> [TEXT:tgt]").add_dataset(copy, "train")]
    if with_images:
        colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
        images = [{"img": np.full((64, 64, 3), rgb, dtype=np.uint8), "label": name}
                  for i in range(rows) for name, rgb in [list(colours.items())[i % 3]]]
        tasks.append(Task(name="colour", instruction="[IMAGE:img] what is the colour? -> [TEXT:label]")
                     .add_dataset(images, "train"))
    return tasks


class ZeroSumCriterion:
    """A criterion whose loss also touches the parameters of the adaptors its task does not feed (times 0),
    so that DDP sees a gradient for every parameter without searching the graph."""

    def __init__(self, criterion, unused: list[torch.nn.Parameter]):
        self.criterion, self.unused = criterion, unused

    def __call__(self, model, sample):
        loss, size, log = self.criterion(model, sample)
        return loss + 0.0 * sum(p.sum() for p in self.unused), size, log


def build(variant: str, arch: str, batch_size: int, save_dir: str) -> Trainer:
    backend = "no_c10d" if variant == "no_c10d" else "c10d"
    find_unused = variant in ("find_unused", "text_only_find")
    trainer = Trainer(arch=arch, dropout=0.0, device="cpu", num_bins=16, num_codes=0, batch_size=batch_size,
                      max_update=1000, sampling="round_robin", ddp_backend=backend, find_unused_parameters=find_unused,
                      save_dir=save_dir, no_save=True, log_interval=10**6)
    trainer.setup(None, make_tasks(with_images=not variant.startswith("text_only")))
    if variant == "zero_sum":
        model = trainer.model
        for task in trainer.tasks:
            fed = model.adaptors_for(task.templates)
            unused = [p for name in model.adaptor_names if name not in fed
                      for p in model.encoder.adaptors[name].parameters()]
            trainer.criteria[task.name] = ZeroSumCriterion(trainer.criteria[task.name], unused)
    return trainer


def seconds_per_update(trainer: Trainer, updates: int, warmup: int = 3) -> float:
    for update in range(warmup):
        trainer.train_step(trainer.batches.micro_batches(update))
    dist.barrier()
    start = time.perf_counter()
    for update in range(warmup, warmup + updates):
        trainer.train_step(trainer.batches.micro_batches(update))
    dist.barrier()
    return (time.perf_counter() - start) / updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="micro")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    best = {variant: float("inf") for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as save_dir:
        for _ in range(args.repeats):  # alternate the variants so that machine load hits them alike
            for variant in VARIANTS:
                trainer = build(variant, args.arch, args.batch_size, save_dir)
                best[variant] = min(best[variant], seconds_per_update(trainer, args.updates))
                trainer.batches.close()
    if int(os.environ.get("RANK", 0)) == 0:
        for variant, seconds in best.items():
            print(f"RESULT variant={variant} arch={args.arch} s_per_update={seconds:.4f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
