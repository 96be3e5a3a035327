"""Interleaved A/B timing: each contender lives in its own worker process, and the rounds alternate between them.

A worker builds its contender once (`factory(**kwargs)`, a module-level callable returning an object with
`step()`, one unit of work, and `describe() -> dict`), then times `steps` steps whenever the parent asks.
Only one worker runs at a time, so contenders never compete with each other for the cores; load that
drifts on a shared machine hits every contender within the same round. Separate processes also give each
contender its own peak RSS.

Two clocks per step: wall-clock and the worker's CPU time (`time.process_time`). With one thread per
worker, CPU time is the work the contender did, untouched by the time other jobs on a busy machine keep
it waiting for a core; with several threads it also counts threads spinning at barriers, so wall-clock
is the measure there (`default_clock`).
"""
from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import time
from typing import Callable, Sequence

import torch

CLOCKS = ("cpu", "wall")


def default_clock(threads: int) -> str:
    """The clock the ratios use: CPU time for one thread per worker, else wall-clock."""
    return "cpu" if threads == 1 else "wall"


def machine_load() -> str:
    """The 1/5/15-minute load averages and the core count, to print next to every measurement."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """This process's resident set size now, in MiB."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def timed_steps(contender, steps: int) -> dict[str, list[float]]:
    """Seconds of each of `steps` calls of `contender.step()`, by both clocks."""
    times: dict[str, list[float]] = {"cpu": [], "wall": []}
    for _ in range(steps):
        wall, cpu = time.perf_counter(), time.process_time()
        contender.step()
        times["cpu"].append(time.process_time() - cpu)
        times["wall"].append(time.perf_counter() - wall)
    return times


def serve(connection, factory: Callable, kwargs: dict, threads: int) -> None:
    """Worker loop: build the contender, then answer ("run", steps) with its step times and peak RSS."""
    torch.set_num_threads(threads)
    rss_before = current_rss_mb()
    contender = factory(**kwargs)
    connection.send({"describe": contender.describe(), "rss_after_imports_mb": rss_before})
    while True:
        command, steps = connection.recv()
        if command == "stop":
            return
        connection.send({"times": timed_steps(contender, steps), "peak_rss_mb": peak_rss_mb()})


class Contender:
    """One contender's worker process (spawned, so the parent's threads and imports do not leak into it)."""

    def __init__(self, name: str, factory: Callable, kwargs: dict, threads: int):
        self.name = name
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, factory, kwargs, threads), daemon=True)
        self.process.start()
        ready = self.receive()
        self.describe, self.rss_after_imports_mb = ready["describe"], ready["rss_after_imports_mb"]
        self.peak_rss_mb = 0.0

    def receive(self) -> dict:
        if not self.connection.poll(3600):
            raise TimeoutError(f"contender {self.name}: its worker did not answer within an hour")
        try:
            return self.connection.recv()
        except EOFError:
            raise RuntimeError(f"contender {self.name}: its worker died (exit code {self.process.exitcode}); "
                               f"see the traceback above") from None

    def run(self, steps: int) -> dict[str, list[float]]:
        self.connection.send(("run", steps))
        answer = self.receive()
        self.peak_rss_mb = answer["peak_rss_mb"]
        return answer["times"]

    def stop(self) -> None:
        self.connection.send(("stop", 0))
        self.process.join(timeout=60)


def interleave(contenders: Sequence[Contender], rounds: int, steps: int, warmup: int = 1,
               unit: str = "step") -> dict[str, dict[str, list[float]]]:
    """{clock: {contender: seconds per step, one value per round (the round's mean)}}; rounds alternate the
    order. Each contender first runs `warmup` untimed steps (allocator, caches, lazy initialisation)."""
    for contender in contenders:
        contender.run(warmup)
    per_round = {clock: {contender.name: [] for contender in contenders} for clock in CLOCKS}
    for index in range(rounds):
        order = contenders if index % 2 == 0 else list(reversed(contenders))
        for contender in order:
            for clock, times in contender.run(steps).items():
                per_round[clock][contender.name].append(sum(times) / len(times))
        line = ", ".join(f"{name} {per_round['wall'][name][-1]:.4f} (cpu {per_round['cpu'][name][-1]:.4f})"
                         for name in per_round["wall"])
        print(f"  round {index + 1}/{rounds}, s/{unit}: {line}; {machine_load()}", flush=True)
    return per_round


def median_spread(values: Sequence[float]) -> str:
    """`median [min..max]` of a list of measurements."""
    return f"{statistics.median(values):.4g} [{min(values):.4g}..{max(values):.4g}]"


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Round-by-round ratios: both values of a round ran under the same load."""
    return [a / b for a, b in zip(numerator, denominator)]


def ratio_line(ratios: dict[str, float]) -> str:
    """The one-line summary every benchmark ends with: `RATIO name=value ...`."""
    return "RATIO " + " ".join(f"{name}={value:.3f}" for name, value in ratios.items())
