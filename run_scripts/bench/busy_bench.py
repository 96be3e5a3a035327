"""Training on a busy machine: our training alone and beside copies of itself (run_scripts/bench/RESULTS.md).

Each case starts `copies` identical training processes at once (train_worker.py: a micro model on three
synthetic tasks, two text and one image, batch 16), lets them train for --seconds and reads each one's
updates/s from its log records after --warmup seconds (all copies are still training then). Cases:
    copies:   1 (alone), 2, 3
    threads:  cores = --threads <the cores of the machine> (torch's default: what a run got before the
              threads option), auto = no --threads (the default now, engine/threads.py), 1 = --threads 1
    workers:  DataLoader workers per task 0 or 1 (1: three worker processes per copy)
Every copy runs without OMP_NUM_THREADS, so torch starts from its own default. Prints updates/s per copy
and their mean per case, the machine load, and each case's per-copy rate over the solo rate of its settings.
Ends with `RATIO busy_x<copies>_<threads>_w<workers>=per-copy updates/s / solo updates/s ...` and
`solo_<threads>_w<workers>_vs_auto=...` (the solo runs against the default's). The target of the
default: busy_x2_auto_w0 >= 0.4.

Usage: python -m run_scripts.bench.busy_bench [--copies 1 2 3] [--threads cores auto 1] [--workers 0 1]
       [--seconds 45] [--warmup 15]
"""
from __future__ import annotations

import argparse
import statistics

from .ab_runs import machine_load, ratio_line
from .train_worker import TrainingRun
from ofasys_fs.engine.threads import usable_cpus

THREADS = ("cores", "auto", "1")


def threads_option(policy: str):
    """The --threads a copy gets under a policy (None: unset)."""
    return {"cores": len(usable_cpus()), "auto": None}.get(policy, int(policy) if policy.isdigit() else None)


def run_case(copies: int, policy: str, workers: int, seconds: float, warmup: float) -> list[float]:
    """Updates/s of each of `copies` concurrent training processes."""
    runs = [TrainingRun(3, True, threads_option(policy), workers, seconds) for _ in range(copies)]
    for run in runs:
        run.wait(timeout=seconds + 120)
    return [run.updates_per_second(after=warmup) for run in runs]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--threads", nargs="+", default=list(THREADS), choices=THREADS)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1], choices=[0, 1])
    parser.add_argument("--seconds", type=float, default=45.0, help="training time of each case")
    parser.add_argument("--warmup", type=float, default=15.0, help="records before this many seconds are left out")
    args = parser.parse_args(argv)
    copies = sorted(set(args.copies) | {1})  # the solo run is every ratio's denominator
    print(f"busy-machine training: {len(usable_cpus())} cores; {machine_load()}", flush=True)
    rates: dict[tuple, list[float]] = {}
    for workers in args.workers:
        for policy in args.threads:
            for count in copies:
                rates[count, policy, workers] = rate = run_case(count, policy, workers, args.seconds, args.warmup)
                print(f"copies {count}, threads {policy} (--threads {threads_option(policy) or 'unset'}), "
                      f"workers {workers}: updates/s per copy {', '.join(f'{r:.2f}' for r in rate)}, mean "
                      f"{statistics.mean(rate):.2f}; {machine_load()}", flush=True)
    ratios = {}
    for (count, policy, workers), rate in rates.items():
        solo = rates[1, policy, workers][0]
        if count > 1:
            ratios[f"busy_x{count}_{policy}_w{workers}"] = statistics.mean(rate) / solo
        elif policy != "auto" and (1, "auto", workers) in rates:
            ratios[f"solo_{policy}_w{workers}_vs_auto"] = solo / rates[1, "auto", workers][0]
    print(ratio_line(ratios))


if __name__ == "__main__":
    main()
