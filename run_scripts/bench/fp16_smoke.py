"""fp16 gradient-overflow smoke test for a CUDA machine (docs/reliability.md, guarantee 6): fp16 training with the
GradScaler must survive updates whose scaled gradients overflow, by skipping them and lowering the loss scale,
and still learn. CPU runs refuse fp16 (tests/reliability/test_numerics.py), so only a GPU can check this.

    python run_scripts/bench/fp16_smoke.py [--updates 60] [--overflow-updates 3]

A criterion registered here multiplies the loss by 2**20 during the first --overflow-updates updates, so that
the scaled fp16 gradients (scale 65536 at the start) overflow. Prints `FP16_SMOKE ok ...` and exits 0 when:
training reached --updates, every parameter is finite, the scaler lowered its scale, and the loss of the last
updates is below the first ones'; else prints `FP16_SMOKE FAILED <why>` and exits 1 (2 without CUDA).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile

import torch

from ofasys_fs import register_criterion
from ofasys_fs.criteria.label_smoothed_ce import LabelSmoothedCE, LabelSmoothedCEConfig
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.tasks.base import Task

WORDS = "zero one two three four five six seven eight nine red green blue what is the copy".split()
OVERFLOW_FACTOR = 2.0 ** 20
INITIAL_SCALE = 65536.0  # torch.amp.GradScaler's default


@register_criterion("fp16_overflow_ce", dataclass=LabelSmoothedCEConfig)
class OverflowingCE(LabelSmoothedCE):
    """label_smoothed_ce whose loss is multiplied by 2**20 for its first `remaining` batches."""

    remaining = 0

    def forward(self, model, sample):
        loss, size, log = super().forward(model, sample)
        if OverflowingCE.remaining > 0:
            OverflowingCE.remaining -= 1
            loss = loss * OVERFLOW_FACTOR
        return loss, size, log


def losses(log_path: str) -> list[float]:
    with open(log_path, encoding="utf-8") as handle:
        return [record["loss"] for record in map(json.loads, handle) if record.get("split") == "train"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--overflow-updates", type=int, default=3)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("FP16_SMOKE FAILED no CUDA device: run this on a GPU machine")
        return 2
    OverflowingCE.remaining = args.overflow_updates
    rows = [{"src": f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]}", "tgt": WORDS[i % 10]} for i in range(64)]
    task = Task(name="copy", instruction="copy [TEXT:src] -> [TEXT:tgt]", criterion="fp16_overflow_ce")
    with tempfile.TemporaryDirectory() as save_dir:
        trainer = Trainer(arch="micro", device="cuda", fp16=True, batch_size=16, max_update=args.updates, lr=3e-3,
                          num_bins=16, num_codes=0, save_dir=save_dir, log_interval=1, seed=1)
        model = trainer.fit(tasks=[task.add_dataset(rows, "train")])
        history = losses(os.path.join(save_dir, "train_log.jsonl"))
    scale = trainer.scaler.get_scale()
    finite = all(torch.isfinite(p).all() for p in model.parameters())
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    problems = [why for why, bad in [
        (f"stopped at update {trainer.num_updates}", trainer.num_updates != args.updates),
        ("non-finite parameters", not finite),
        (f"the loss scale stayed at {scale} (no overflow handled)", scale >= INITIAL_SCALE),
        (f"the loss did not fall ({first:.3f} -> {last:.3f})", not (last < first and math.isfinite(last))),
    ] if bad]
    if problems:
        print(f"FP16_SMOKE FAILED {'; '.join(problems)}")
        return 1
    print(f"FP16_SMOKE ok updates={trainer.num_updates} scale={scale} loss {first:.3f} -> {last:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
