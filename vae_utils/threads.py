"""Training threads that follow the machine's load, so that a run beside other work does not collapse.

torch runs its operators on one OpenMP thread per core. When other work holds some of the cores, those threads wait
for each other at every parallel region while the scheduler runs the other work, and a step gets several times
slower than on one thread (benchmarks/busy_machine.py measures it). `ThreadGovernor` looks, about once a second,
at how many cores the rest of the machine keeps busy (Linux's /proc/stat, less this process's own CPU time) and
gives torch the cores left free: all of them on a quiet machine, where nothing changes, down to one. A thread
count set by the user (`TrainConfig.threads`, or OMP_NUM_THREADS in the environment) is kept as it is. Where
/proc/stat is missing (macOS, Windows), nothing changes either.

The thread count changes the last digits of results: a run is bit for bit repeatable with a fixed thread count
(`threads=N`), or when the machine stays quiet.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Optional

import torch

STAT = "/proc/stat"
INTERVAL = 1.0  # seconds between looks at the load: a fraction of a step's cost at most (reading STAT: ~0.1 ms)


def read_cpu_times(path: str = STAT) -> Optional[tuple[float, int]]:
    """(seconds that the CPUs this process may run on spent busy, summed over them; how many CPUs those are) from
    /proc/stat, or None where there is no such file. Busy is everything but idle and iowait (steal included: the
    time a hypervisor gave to its other guests)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy, cpus = 0, 0
    for line in lines:
        name, *values = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit() and len(values) >= 8):
            continue
        if allowed is not None and int(name[3:]) not in allowed:
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in values[:8])
        busy += user + nice + system + irq + softirq + steal
        cpus += 1
    return (busy / ticks, cpus) if cpus else None


def free_cores(cpus: int, others_busy: float) -> int:
    """The cores other work leaves free, rounded to the nearest whole core, at least 1."""
    return max(1, int(cpus - others_busy + 0.5))


def threads_for_load(seconds: float = 0.5) -> int:
    """The cores other work leaves free now, looked at over `seconds` (at most torch's thread count; that count where
    /proc/stat is missing): for a process that chooses its threads once, such as a test session."""
    most, start, own = torch.get_num_threads(), read_cpu_times(), time.process_time()
    began = time.monotonic()
    time.sleep(seconds)
    end = read_cpu_times()
    if start is None or end is None:
        return most
    others = ((end[0] - start[0]) - (time.process_time() - own)) / (time.monotonic() - began)
    return min(most, free_cores(end[1], others))


class ThreadGovernor:
    """Call once per training step: about every `interval` seconds it sets torch's thread count to the cores the rest
    of the machine leaves free, between 1 and the count it started with; `restore()` puts that count back."""

    def __init__(self, threads: int = 0, interval: Optional[float] = None, clock: Callable[[], float] = time.monotonic,
                 cpu_times: Optional[Callable[[], Optional[tuple[float, int]]]] = None,
                 own_time: Callable[[], float] = time.process_time) -> None:
        self.started_with = torch.get_num_threads()
        if threads > 0:
            torch.set_num_threads(threads)
        self.pinned = threads > 0 or bool(os.environ.get("OMP_NUM_THREADS"))
        self.most, self.interval = torch.get_num_threads(), INTERVAL if interval is None else interval
        self.clock, self.cpu_times, self.own_time = clock, cpu_times or read_cpu_times, own_time
        self.last: Optional[tuple[float, float, float]] = None  # (clock, machine busy seconds, own CPU seconds)
        self.changes = 0
        first = None if self.pinned else self._sample()
        if first is not None:
            self.last = first[:3]

    def _sample(self) -> Optional[tuple[float, float, float, int]]:
        times = self.cpu_times()
        if times is None:
            self.pinned = True  # no way to see the load here: leave torch's threads alone
            return None
        return self.clock(), times[0], self.own_time(), times[1]

    def step(self) -> None:
        """Look at the load if `interval` seconds have passed since the last look, and follow it."""
        if self.pinned or self.last is None or self.clock() - self.last[0] < self.interval:
            return
        sample = self._sample()
        if sample is None:
            return
        wall = sample[0] - self.last[0]
        others = ((sample[1] - self.last[1]) - (sample[2] - self.last[2])) / wall  # cores busy with other work
        self.last = sample[:3]
        wanted = min(self.most, free_cores(sample[3], others))
        if wanted != torch.get_num_threads():
            torch.set_num_threads(wanted)
            self.changes += 1

    def restore(self) -> None:
        """Give torch back the thread count it had before."""
        if torch.get_num_threads() != self.started_with:
            torch.set_num_threads(self.started_with)
