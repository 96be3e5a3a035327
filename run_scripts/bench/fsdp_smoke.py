"""FSDP2 smoke test on one GPU (world size 1, NCCL): ddp_backend=fully_sharded trains like the plain trainer,
resumes exactly from its own checkpoint, and trains in bf16. Not run by the test suite (no GPU there);
run it whenever a GPU is available and record the result in docs/distributed.md.

    python run_scripts/bench/fsdp_smoke.py [--arch micro] [--updates 8]   (--device cpu: a dry run on gloo)

Prints one `SMOKE <check> ok|FAIL <details>` line per check and exits 1 when one fails.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np
import torch

from ofasys_fs.checkpoint import load_checkpoint
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.tasks.base import Task

WORDS = "zero one two three four five six seven eight nine red green blue what is the colour copy".split()
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def tasks() -> list[Task]:
    copy = [{"src": f"{WORDS[i % 10]} {WORDS[i * 3 % 10]}", "tgt": WORDS[i % 10]} for i in range(40)]
    images = [{"img": np.full((32, 32, 3), rgb, dtype=np.uint8), "label": name}
              for i in range(24) for name, rgb in [list(COLOURS.items())[i % 3]]]
    colour = Task(name="colour", instruction="[IMAGE:img] what is the colour? -> [TEXT:label]")
    return [Task(name="copy", instruction="copy [TEXT:src] -> [TEXT:tgt]").add_dataset(copy, "train"),
            colour.add_dataset(images, "train")]


def train(save_dir: str, args: argparse.Namespace, updates: int, backend: str, **options) -> dict:
    """Train (or resume in save_dir) to `updates`; returns the checkpoint and the seconds taken."""
    start = time.perf_counter()
    Trainer(arch=args.arch, device=args.device, dropout=0.0, batch_size=8, lr=1e-3, adam_eps=1e-6, lr_scheduler="fixed",
            sampling="round_robin", update_freq=2, max_update=updates, save_dir=save_dir,
            log_interval=max(1, updates // 4), seed=1, ddp_backend=backend, **options).fit(tasks=tasks())
    if args.device == "cuda":
        torch.cuda.synchronize()
    return {"state": load_checkpoint(f"{save_dir}/checkpoint_last.pt"), "seconds": time.perf_counter() - start}


def largest_difference(first: dict, second: dict) -> tuple[float, str]:
    """The largest |a - b| / max|b| over the weights, and where."""
    worst = (0.0, "")
    for name, value in second["state"]["model"].items():
        other = first["state"]["model"][name].float()
        scale = float(value.float().abs().max()) or 1.0
        worst = max(worst, (float((other - value.float()).abs().max()) / scale, name))
    return worst


def report(check: str, ok: bool, details: str) -> bool:
    print(f"SMOKE {check} {'ok' if ok else 'FAIL'} {details}", flush=True)
    return ok


def read_log(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [record for record in map(json.loads, handle) if record["split"] == "train"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="micro")
    parser.add_argument("--updates", type=int, default=8)
    parser.add_argument("--rtol", type=float, default=1e-4, help="GPU kernels are not bit-deterministic")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("fsdp_smoke: needs a CUDA GPU (--device cpu for a dry run)", file=sys.stderr)
        return 1
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, arch {args.arch}", flush=True)
    ok = True
    with tempfile.TemporaryDirectory() as root:
        plain = train(f"{root}/plain", args, args.updates, "c10d")
        sharded = train(f"{root}/sharded", args, args.updates, "fully_sharded")
        error, name = largest_difference(sharded, plain)
        ok &= report("equals_plain", error <= args.rtol, f"max relative difference {error:.2e} ({name}); seconds "
                                                         f"plain {plain['seconds']:.1f}, fsdp {sharded['seconds']:.1f}")
        half = args.updates // 2
        train(f"{root}/resumed", args, half, "fully_sharded")
        resumed = train(f"{root}/resumed", args, args.updates, "fully_sharded")
        error, name = largest_difference(resumed, sharded)
        ok &= report("resume", error <= args.rtol, f"resumed at {half}: max relative difference {error:.2e} ({name})")
        optimizer = resumed["state"]["optimizer"]["state"]
        full = all(not hasattr(value, "placements") for state in optimizer.values() for value in state.values())
        ok &= report("checkpoint_format", full, "optimizer state holds plain full tensors")
        bf16 = train(f"{root}/bf16", args, 4 * args.updates, "fully_sharded", bf16=True)
        losses = [record["loss"] for record in read_log(f"{root}/bf16/train_log.jsonl")]
        ok &= report("bf16_trains", losses[-1] < losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f} in "
                                                             f"{bf16['seconds']:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
