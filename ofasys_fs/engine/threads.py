"""Intra-op threads of the training process (docs/training.md, "Threads on a shared machine").

`--threads N` fixes N. Without it the count follows the machine: at most torch's own count (OMP_NUM_THREADS,
or torch.set_num_threads before fit, or the physical cores) and at most the cores of this process's CPU set
that other processes leave free, measured from /proc/stat at the start and again every CHECK_SECONDS while
training. PyTorch's threads wait for each other at the end of every parallel operation; when another
process holds one of their cores, all of them wait for it, and a run that asked for every core of a busy
machine went 10x slower than one with a thread per free core (docs/training.md). DataLoader workers run
one thread each (PyTorch's default in workers); while busy they are other processes to this measure.
"""
from __future__ import annotations

import math
import os
import time
from typing import Callable, Optional

import torch

CHECK_SECONDS = 10.0  # how often a run without --threads measures the free cores again
FIRST_SAMPLE_SECONDS = 0.3  # the measurement before training starts
IDLE_ENOUGH = 0.3  # a core counts as free while other processes keep less than this much of it busy


def usable_cpus() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def busy_seconds(cpus: list[int], stat_path: str = "/proc/stat") -> Optional[float]:
    """Seconds the given CPUs have spent busy since boot (every process), from Linux's /proc/stat; None
    elsewhere."""
    wanted = {f"cpu{index}" for index in cpus}
    try:
        with open(stat_path, encoding="ascii") as stat:
            lines = [line.split() for line in stat if line.startswith("cpu")]
    except OSError:
        return None
    ticks = 0
    for fields in lines:
        if fields[0] in wanted:  # user nice system idle iowait irq softirq steal ...
            user, nice, system, _, _, irq, softirq, steal = (int(value) for value in fields[1:9])
            ticks += user + nice + system + irq + softirq + steal
    return ticks / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU time of this process, all its threads."""
    times = os.times()
    return times.user + times.system


def free_cores(usable: int, busy_elsewhere: float) -> int:
    """Cores left when other processes keep `busy_elsewhere` cores busy (a core they use less than
    IDLE_ENOUGH of counts as free); at least 1."""
    return max(1, min(usable, math.floor(usable - busy_elsewhere + IDLE_ENOUGH)))


class CpuMeter:
    """How many of this process's CPUs other processes kept busy since the last reading."""

    def __init__(self, cpus: Optional[list[int]] = None, read_busy: Optional[Callable[[list[int]], Optional[float]]] = None,
                 read_own: Callable[[], float] = own_cpu_seconds, clock: Callable[[], float] = time.monotonic):
        self.cpus = cpus if cpus is not None else usable_cpus()
        self.read_busy, self.read_own, self.clock = read_busy or busy_seconds, read_own, clock
        self.last = self.reading()

    def reading(self) -> Optional[tuple[float, float, float]]:
        busy = self.read_busy(self.cpus)
        return None if busy is None else (self.clock(), busy, self.read_own())

    def busy_elsewhere(self) -> Optional[float]:
        """Cores busy with other processes since the last call (None where /proc/stat is unknown)."""
        now = self.reading()
        last, self.last = self.last, now
        if now is None or last is None or now[0] <= last[0]:
            return None
        return max(0.0, ((now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0]))


class TrainingThreads:
    """Sets and adapts torch's intra-op thread count for one training run; `close()` restores the caller's."""

    def __init__(self, threads: Optional[int], meter: Optional[CpuMeter] = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.previous = torch.get_num_threads()
        self.fixed, self.clock = threads, clock
        self.limit = min(self.previous, len(meter.cpus if meter is not None else usable_cpus()))
        self.meter = None if threads or self.limit == 1 else meter or CpuMeter()
        self.count = threads or self.limit
        if self.meter is not None and self.meter.last is not None:
            sleep(FIRST_SAMPLE_SECONDS)
            self.count = self.measured() or self.limit
        torch.set_num_threads(self.count)
        self.checked = clock()

    def measured(self) -> Optional[int]:
        busy = self.meter.busy_elsewhere()
        return None if busy is None else min(self.limit, free_cores(len(self.meter.cpus), busy))

    def describe(self) -> str:
        if self.fixed:
            return f"threads {self.count} (--threads)"
        if self.meter is None:
            return f"threads {self.count} (torch's thread count when training started; --threads N sets it)"
        return (f"threads {self.count} (the cores other processes leave free, at most {self.limit}; measured every "
                f"{CHECK_SECONDS:.0f} s, --threads N fixes it)")

    def adjust(self) -> Optional[str]:
        """Measure again when CHECK_SECONDS have passed; returns a line for the log when the count changed."""
        if self.meter is None or self.clock() - self.checked < CHECK_SECONDS:
            return None
        self.checked = self.clock()
        count = self.measured()
        if count is None or count == self.count:
            return None
        line = f"threads {self.count} -> {count}: other processes use the cores this run does not"
        if count > self.count:
            line = f"threads {self.count} -> {count}: cores became free"
        self.count = count
        torch.set_num_threads(count)
        return line

    def close(self) -> None:
        torch.set_num_threads(self.previous)
