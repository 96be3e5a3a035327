"""Rows/s of reading + preprocessing image-caption rows from raw files versus from ofasys-preprocess shards.

Builds N PNG files and a jsonl referencing them in a temporary folder, shards them with ofasys-preprocess,
then times RowSource + RowEncoder over both in the same run (best of `--repeats` alternating passes, one
thread) and prints `RATIO shard_vs_raw=<x>` last.
Usage: python run_scripts/bench/data_bench.py [--rows 1000] [--image-side 128]  (with ofasys_fs installed)
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from ofasys_fs.cli.preprocess import main as preprocess_main
from ofasys_fs.contracts import SampleContext
from ofasys_fs.data.encode import RowEncoder
from ofasys_fs.data.rows import RowSource, as_row_source
from ofasys_fs.vocab import Vocabulary

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
        context = SampleContext(split="train", task="bench", row_index=index, base_dir=source.base_dir)
        encoder.encode(source[index], context)
    return len(source) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--image-side", type=int, default=128, help="pixels per side of the generated PNGs")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker; also steadier timings on a shared machine
    with tempfile.TemporaryDirectory() as folder:
        raw_path = build_raw_data(folder, args.rows, args.image_side)
        shard_dir = os.path.join(folder, "shards")
        start = time.perf_counter()
        if preprocess_main(["--input", raw_path, "--destdir", shard_dir, "--instruction", INSTRUCTION]) != 0:
            raise SystemExit("preprocessing failed")
        print(f"preprocess (validating every row): {args.rows / (time.perf_counter() - start):.1f} rows/s")
        encoder = RowEncoder("bench", [INSTRUCTION], Vocabulary.default())
        sources = {"raw": as_row_source(raw_path), "shard": as_row_source(shard_dir)}
        speed = dict.fromkeys(sources, 0.0)
        for _ in range(args.repeats):  # alternating passes, best of each: machine noise hits both alike
            for name, source in sources.items():
                speed[name] = max(speed[name], rows_per_second(source, encoder))
        for name, value in speed.items():
            print(f"read+preprocess from {name:>5}: {value:8.1f} rows/s")
        print(f"RATIO shard_vs_raw={speed['shard'] / speed['raw']:.3f}")


if __name__ == "__main__":
    main()
