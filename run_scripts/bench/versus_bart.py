"""What the benchmarks of our model against its BART twin (twins.py) share: the speed ratio of a round and the
command line that benches each arch and ends with the RATIO line."""
from __future__ import annotations

import argparse
from typing import Callable, Iterable, Optional, Sequence

from .ab_runs import CLOCKS, default_clock, paired_ratios, ratio_line
from .twins import vocab_size

# bench_arch(arch, vocab, rounds, threads, clock) -> {ratio name: value}
ArchBench = Callable[[str, int, int, int, str], dict[str, float]]


def ours_over_bart(seconds: dict[str, Sequence[float]]) -> list[float]:
    """Per round, how many times faster the "ours" contender ran than "bart" (their seconds, paired by round)."""
    return paired_ratios(seconds["bart"], seconds["ours"])


def run_command(description: str, archs: Iterable[str], bench_arch: ArchBench,
                argv: Optional[Sequence[str]] = None) -> None:
    """Parse --archs/--rounds/--threads/--clock, run `bench_arch` for each arch and print the RATIO line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--archs", nargs="+", default=["tiny", "base"], choices=sorted(archs))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads of every worker (1: steadiest on a shared machine)")
    parser.add_argument("--clock", choices=CLOCKS, help="clock of the ratios (default: cpu with 1 thread, else wall)")
    args = parser.parse_args(argv)
    clock = args.clock or default_clock(args.threads)
    vocab = vocab_size()
    ratios = {}
    for arch in args.archs:
        ratios.update(bench_arch(arch, vocab, args.rounds, args.threads, clock))
    print(ratio_line(ratios))
