"""How cost grows with the work (run_scripts/bench/RESULTS.md): four curves, their growth, and a PNG.

    tasks:   training updates/s of a micro model vs the number of tasks in the mix (equal-size synthetic
             text tasks, batch 16, one thread, train_worker.py), DataLoader workers 0 and 1 per task
    workers: ofasys-preprocess rows/s vs --workers on a jsonl of 64 px PNG images and their colour names,
             checked with an instruction (decoding and resizing each image: work worth spreading)
    shards:  opening a shard folder of small records (Task.add_dataset) and reading 1,000 random rows:
             seconds and resident memory vs rows in the shard (each size in a fresh process)
    source:  decoding seconds per call vs source length (our generator, beam 5, 20 decoder steps)
Growth of each curve: the slope of log(cost) over log(size) between its first and last point, called flat
(< 0.2), linear (0.2..1.2) or worse (> 1.2); rates are turned into costs (seconds per update or row)
first. Prints the figures, writes scale.json and scale.png into --out, and ends with
`RATIO growth_tasks_w0=slope ... ` (one slope per curve; preprocess: `preprocess_speedup=rows/s with 2
workers over 1`).

Usage: python -m run_scripts.bench.scale_bench [--small] [--out bench_out/scale] [--arch tiny]
--small: 1/8 tasks, 10k/100k shard rows, sources 32..128, short runs: a check that it works, not figures.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ofasys_fs.cli.preprocess import main as preprocess_main
from ofasys_fs.data.shards import ShardWriter
from ofasys_fs.generators.sequence import SequenceGenerator
from run_scripts.demo.pictures import curve_panel, grid

from .ab_runs import current_rss_mb, machine_load, ratio_line
from .train_worker import COLOURS, ROOT, TrainingRun
from .twins import TokenBatch, build_ours, vocab_size

FULL = {"tasks": [1, 8, 32], "task_workers": [0, 1], "seconds": 60.0, "warmup": 25.0,
        "preprocess_rows": 4000, "preprocess_workers": [1, 2],
        "shard_rows": [10_000, 100_000, 1_000_000], "sources": [32, 64, 128, 256, 512], "decode_calls": 3}
SMALL = {"tasks": [1, 8], "task_workers": [0], "seconds": 25.0, "warmup": 12.0,
         "preprocess_rows": 800, "preprocess_workers": [1, 2],
         "shard_rows": [10_000, 100_000], "sources": [32, 64, 128], "decode_calls": 1}
RANDOM_READS = 1000


def growth(points: list[tuple[float, float]]) -> tuple[float, str]:
    """(slope of log cost over log size between the first and last point, flat / linear / worse)."""
    (x0, y0), (x1, y1) = points[0], points[-1]
    slope = math.log(y1 / y0) / math.log(x1 / x0)
    return slope, "flat" if slope < 0.2 else "linear" if slope <= 1.2 else "worse than linear"


def report(name: str, unit: str, points: list[tuple[float, float]], figures: dict, ratios: dict) -> None:
    slope, kind = growth(points)
    print(f"{name}: " + ", ".join(f"{x:g} -> {y:.4g} {unit}" for x, y in points) + f"; growth {kind} (slope "
          f"{slope:.2f}); {machine_load()}", flush=True)
    figures[name] = {"unit": unit, "points": points, "slope": slope, "growth": kind}
    ratios[f"growth_{name}"] = slope


def training_vs_tasks(settings: dict, figures: dict, ratios: dict) -> None:
    for workers in settings["task_workers"]:
        points = []
        for count in settings["tasks"]:
            run = TrainingRun(count, False, 1, workers, settings["seconds"])
            run.wait(timeout=settings["seconds"] + 300)
            points.append((count, 1000 / run.updates_per_second(after=settings["warmup"])))
        report(f"tasks_w{workers}", "ms/update", points, figures, ratios)


def image_rows_file(folder: Path, count: int) -> Path:
    """A jsonl of `count` rows {"img": a 64 px PNG of one colour with noise, "label": its colour name}."""
    images, rng, lines = folder / "images", np.random.default_rng(0), []
    images.mkdir(parents=True, exist_ok=True)
    for index, (name, rgb) in enumerate((name, COLOURS[name]) for name in list(COLOURS) * (count // len(COLOURS))):
        pixels = np.clip(np.array(rgb) + rng.integers(-30, 30, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"{index}.png")
        lines.append(json.dumps({"img": f"images/{index}.png", "label": name}) + "\n")
    path = folder / "preprocess.jsonl"
    path.write_text("".join(lines))
    return path


def preprocess_vs_workers(settings: dict, folder: Path, figures: dict, ratios: dict) -> None:
    data, rows = image_rows_file(folder, settings["preprocess_rows"]), settings["preprocess_rows"]
    rates = []
    for workers in settings["preprocess_workers"]:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            status = preprocess_main(["--input", str(data), "--destdir", str(folder / f"shards_w{workers}"),
                                      "--instruction", "[IMAGE:img] what is the colour? -> [TEXT:label]",
                                      "--workers", str(workers)])
        if status != 0:
            raise RuntimeError(f"ofasys-preprocess --workers {workers} exited with {status}")
        rates.append((workers, rows / (time.perf_counter() - start)))
    print("preprocess: " + ", ".join(f"--workers {w}: {r:.0f} rows/s" for w, r in rates) + f"; {machine_load()}")
    figures["preprocess"] = {"unit": "rows/s", "points": rates}
    ratios["preprocess_speedup"] = rates[-1][1] / rates[0][1]


def write_shard(folder: Path, rows: int) -> None:
    with ShardWriter(folder, "train") as writer:
        for index in range(rows):
            writer.add_row({"src": f"row {index} of the shard", "tgt": f"{index % 97}"})
        writer.finalize()


def measure_shard(folder: str) -> dict:
    """In this (fresh) process: open the shard as a task's data and read RANDOM_READS rows at random."""
    from ofasys_fs.tasks.base import Task

    before = current_rss_mb()
    start = time.perf_counter()
    task = Task(name="shard", instruction="[TEXT:src] -> [TEXT:tgt]").add_dataset(folder, "train")
    opened = time.perf_counter() - start
    rows = task.datasets["train"]
    picks = random.Random(0).sample(range(len(rows)), min(RANDOM_READS, len(rows)))
    start = time.perf_counter()
    for index in picks:
        rows[index]
    return {"open_ms": 1000 * opened, "read_us": 1e6 * (time.perf_counter() - start) / len(picks),
            "rss_open_mb": current_rss_mb() - before}


def shards_vs_rows(settings: dict, folder: Path, figures: dict, ratios: dict) -> None:
    measured = []
    for rows in settings["shard_rows"]:
        shard = folder / f"shard_{rows}"
        write_shard(shard, rows)
        done = subprocess.run([sys.executable, "-m", "run_scripts.bench.scale_bench", "--measure-shard", str(shard)],
                              capture_output=True, text=True, cwd=ROOT, check=True,
                              env={**os.environ, "PYTHONPATH": ROOT})
        measured.append((rows, json.loads(done.stdout.splitlines()[-1])))
    for key, unit in (("open_ms", "ms to open"), ("rss_open_mb", "MiB resident"), ("read_us", "us per random read")):
        report(f"shard_{key}", unit, [(rows, max(values[key], 1e-6)) for rows, values in measured], figures, ratios)


def decoding_vs_source(settings: dict, arch: str, figures: dict, ratios: dict) -> None:
    vocab, points = vocab_size(), []
    model = build_ours(arch, vocab).eval()
    generator = SequenceGenerator()
    for length in settings["sources"]:
        sample = TokenBatch.random(4, length, 2, vocab).ours_sample()
        options = {"beam": 5, "min_len": 19, "max_len_b": 19}
        generator.generate(model, sample, **options)  # warm-up
        start = time.process_time()
        for _ in range(settings["decode_calls"]):
            generator.generate(model, sample, **options)
        points.append((length, 1000 * (time.process_time() - start) / settings["decode_calls"]))
    report(f"source_{arch}", "CPU ms/call", points, figures, ratios)


X_LABELS = {"tasks": "tasks", "preprocess": "workers", "shard": "rows", "source": "tokens"}


def draw(figures: dict, path: Path) -> None:
    panels = [curve_panel(f"{name} ({figure['unit']})", {figure.get("growth", "rows/s"): figure["points"]},
                          x_label=X_LABELS[name.split("_")[0]]) for name, figure in figures.items()]
    grid(panels, columns=3).save(path, optimize=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small settings: a check that it works")
    parser.add_argument("--out", default="bench_out/scale", help="folder of scale.json and scale.png")
    parser.add_argument("--arch", default="tiny", help="arch of the decoding curve")
    parser.add_argument("--measure-shard", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_shard:
        print(json.dumps(measure_shard(args.measure_shard)))
        return
    settings = SMALL if args.small else FULL
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figures, ratios = {}, {}
    print(f"scale bench ({'small' if args.small else 'full'} settings); {machine_load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="scale_bench_") as scratch:
        training_vs_tasks(settings, figures, ratios)
        preprocess_vs_workers(settings, Path(scratch), figures, ratios)
        shards_vs_rows(settings, Path(scratch), figures, ratios)
    decoding_vs_source(settings, args.arch, figures, ratios)
    (out / "scale.json").write_text(json.dumps(figures, indent=1))
    draw(figures, out / "scale.png")
    print(f"wrote {out / 'scale.json'} and {out / 'scale.png'}")
    print(ratio_line(ratios))


if __name__ == "__main__":
    main()
