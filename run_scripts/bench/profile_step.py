"""Where the time of one benchmark workload goes: torch.profiler's operator table (self CPU time) for our model
or the BART twin, on the same workloads as train_bench.py and generate_bench.py.

Usage: python -m run_scripts.bench.profile_step train|beam|greedy [--model ours|bart] [--arch tiny] [--rows 30]
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from . import generate_bench, train_bench
from .twins import vocab_size

WORKLOADS = {
    ("train", "ours"): lambda arch, vocab: train_bench.ours_training(arch, vocab, train_bench.SHAPES[arch]),
    ("train", "bart"): lambda arch, vocab: train_bench.bart_training(arch, vocab, train_bench.SHAPES[arch]),
    ("beam", "ours"): lambda arch, vocab: generate_bench.ours_generation(arch, vocab, "beam"),
    ("beam", "bart"): lambda arch, vocab: generate_bench.bart_generation(arch, vocab, "beam"),
    ("greedy", "ours"): lambda arch, vocab: generate_bench.ours_generation(arch, vocab, "greedy"),
    ("greedy", "bart"): lambda arch, vocab: generate_bench.bart_generation(arch, vocab, "greedy"),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=("train", "beam", "greedy"))
    parser.add_argument("--model", choices=("ours", "bart"), default="ours")
    parser.add_argument("--arch", default="tiny")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, default=30, help="operators listed")
    parser.add_argument("--sort", default="self_cpu_time_total")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runner = WORKLOADS[args.workload, args.model](args.arch, vocab_size())
    runner.step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as profiler:
        runner.step()
    print(profiler.key_averages().table(sort_by=args.sort, row_limit=args.rows))


if __name__ == "__main__":
    main()
