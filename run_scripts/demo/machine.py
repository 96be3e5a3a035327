"""The machine a demo run had: the cores other processes left free (which the demo's torch threads use) and
its fp32 matmul rate, printed beside the timings so that runs on different machines can be compared
(machines of one kind differed by 1.5-3x in matmul rate; run_scripts/bench/RESULTS.md)."""
from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator

import torch

from ofasys_fs.engine.threads import FIRST_SAMPLE_SECONDS, CpuMeter, free_cores, usable_cpus
from ofasys_fs.models.cpu_linear import ONEDNN, kernel_choice, onednn_matmul

MATMUL_SIDE = 1024
MATMUL_SECONDS = 0.3  # per kernel and thread count; the best call counts


def free_core_count() -> int:
    """The cores of this process's CPU set that other processes leave free now, at most torch's thread count."""
    meter = CpuMeter()
    time.sleep(FIRST_SAMPLE_SECONDS)
    busy = meter.busy_elsewhere()
    usable = min(torch.get_num_threads(), len(meter.cpus))
    return usable if busy is None else min(usable, free_cores(len(meter.cpus), busy))


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to `threads` inside the block, restored after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def matmul_gflops(threads: int) -> float:
    """GFLOP/s of a MATMUL_SIDE^3 fp32 matmul on `threads` threads: the faster of torch.mm and oneDNN (the
    model's linear layers use either, models/cpu_linear.py), best call within MATMUL_SECONDS each."""
    a, b = torch.randn(MATMUL_SIDE, MATMUL_SIDE), torch.randn(MATMUL_SIDE, MATMUL_SIDE)
    best = float("inf")
    with torch_threads(threads):
        for multiply in (torch.mm, onednn_matmul) if ONEDNN else (torch.mm,):
            multiply(a, b)
            end = time.perf_counter() + MATMUL_SECONDS
            while time.perf_counter() < end:
                start = time.perf_counter()
                multiply(a, b)
                best = min(best, time.perf_counter() - start)
    return 2 * MATMUL_SIDE**3 / best / 1e9


def describe_machine(threads: int) -> dict:
    """Threads used, cores, load, matmul rates on 1 and `threads` threads, and the linear kernel at `threads`."""
    rates = {1: matmul_gflops(1)}
    if threads > 1:
        rates[threads] = matmul_gflops(threads)
    with torch_threads(threads):
        choice = kernel_choice()
    return {"threads": threads, "cores": len(usable_cpus()), "load": [round(x, 2) for x in os.getloadavg()],
            "matmul_gflops": {str(count): round(rate, 1) for count, rate in rates.items()},
            "linear_layers": choice}


def machine_line(machine: dict) -> str:
    rates = ", ".join(f"{rate:.0f} GFLOP/s on {count} thread{'s' if count != '1' else ''}"
                      for count, rate in machine["matmul_gflops"].items())
    return (f"machine: {machine['threads']} torch thread(s) of {machine['cores']} cores, load "
            f"{' '.join(map(str, machine['load']))}; fp32 matmul {MATMUL_SIDE}^3: {rates}; linear layers: "
            f"{machine['linear_layers']}")
