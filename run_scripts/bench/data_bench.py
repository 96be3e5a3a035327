"""Rows/s of reading + preprocessing image-caption rows from raw files and from ofasys-preprocess shards, against
the rows/s that a training step of the tiny model consumes.

Builds N PNG files and a jsonl referencing them in a temporary folder, shards them with ofasys-preprocess,
then times RowSource + RowEncoder over both (one thread, as in a DataLoader worker) and a training step
(forward, label-smoothed CE, backward, AdamW; torch's default thread count) on batches collated from the
shard rows, in alternating rounds (median [min..max]). Prints
`RATIO shard_vs_raw=<x> shard_vs_train_step=<y>` last: y >= 1 means one worker reading shards keeps up
with training.
Usage: python -m run_scripts.bench.data_bench [--rows 1000] [--image-side 128] [--arch tiny] [--batch-size 16]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from ofasys_fs.contracts import SampleContext
from ofasys_fs.criteria.label_smoothed_ce import LabelSmoothedCE
from ofasys_fs.data.encode import RowEncoder
from ofasys_fs.data.preprocess_run import PreprocessOptions, preprocess
from ofasys_fs.data.rows import RowSource, as_row_source
from ofasys_fs.models.generalist import GeneralistModel
from ofasys_fs.vocab import Vocabulary

from .ab_runs import machine_load, median_spread, paired_ratios, ratio_line

INSTRUCTION = "[IMAGE:img] what does the image describe? -> [TEXT:cap]"


def build_raw_data(folder: str, rows: int, side: int, seed: int = 0) -> str:
    """`rows` noisy PNG images (noise keeps PNG decoding realistic) and a train.jsonl of captions; returns its path."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "images"))
    path = os.path.join(folder, "train.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, "images", f"{i}.png"))
            f.write(json.dumps({"img": f"images/{i}.png", "cap": f"a noisy square number {i} on a table"}) + "\n")
    return path


def rows_per_second(source: RowSource, encoder: RowEncoder) -> float:
    """Throughput of reading and encoding every row once (images decoded and resized, text tokenised)."""
    start = time.perf_counter()
    for index in range(len(source)):
        encoder.encode(source[index], row_context(source, index))
    return len(source) / (time.perf_counter() - start)


def row_context(source: RowSource, index: int) -> SampleContext:
    return SampleContext(split="train", task="bench", row_index=index, base_dir=source.base_dir)


class TrainingStep:
    """Forward, label-smoothed CE, backward and AdamW of a fresh model on one batch collated from `source`."""

    def __init__(self, arch: str, source: RowSource, encoder: RowEncoder, batch_size: int):
        self.sample = encoder.collate([encoder.encode(source[i], row_context(source, i)) for i in range(batch_size)])
        self.model = GeneralistModel(arch=arch).build(encoder.vocab, ("text", None)).train()
        self.criterion = LabelSmoothedCE()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.batch_size = batch_size

    def rows_per_second(self, steps: int = 2) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.optimizer.zero_grad(set_to_none=True)
            loss, _, _ = self.criterion(self.model, self.sample)
            loss.backward()
            self.optimizer.step()
        return self.batch_size * steps / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--image-side", type=int, default=128, help="pixels per side of the generated PNGs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", default="tiny", help="model of the training step")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per training step")
    args = parser.parse_args(argv)
    training_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as folder:
        raw_path = build_raw_data(folder, args.rows, args.image_side)
        shard_dir = os.path.join(folder, "shards")
        start = time.perf_counter()
        preprocess(PreprocessOptions(input=raw_path, destdir=shard_dir, instruction=INSTRUCTION))
        print(f"preprocess (validating every row): {args.rows / (time.perf_counter() - start):.1f} rows/s")
        encoder = RowEncoder("bench", [INSTRUCTION], Vocabulary.default())
        sources = {"raw": as_row_source(raw_path), "shard": as_row_source(shard_dir)}
        training = TrainingStep(args.arch, sources["shard"], encoder, args.batch_size)
        training.rows_per_second(steps=1)  # warm-up
        speed: dict[str, list[float]] = {name: [] for name in (*sources, "train")}
        for _ in range(args.repeats):  # alternating rounds: machine noise hits all alike
            torch.set_num_threads(1)  # as in a DataLoader worker; also steadier timings on a shared machine
            for name, source in sources.items():
                speed[name].append(rows_per_second(source, encoder))
            torch.set_num_threads(training_threads)
            speed["train"].append(training.rows_per_second())
            print("  round: " + ", ".join(f"{name} {values[-1]:.1f} rows/s" for name, values in speed.items())
                  + f" ({machine_load()})", flush=True)
        for name in sources:
            print(f"read+preprocess from {name:>5} (1 thread): {median_spread(speed[name])} rows/s")
        print(f"training step ({args.arch}, batch {args.batch_size}, {training_threads} threads) consumes "
              f"{median_spread(speed['train'])} rows/s; {machine_load()}")
        shard_vs_raw = paired_ratios(speed["shard"], speed["raw"])
        shard_vs_train = paired_ratios(speed["shard"], speed["train"])
        print(ratio_line({"shard_vs_raw": statistics.median(shard_vs_raw),
                          "shard_vs_train_step": statistics.median(shard_vs_train)}))


if __name__ == "__main__":
    main()
