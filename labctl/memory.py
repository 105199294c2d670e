"""The peak memory of a local run, per task and for the whole run, sampled while it runs.

Resident size (RSS) would overstate forked tasks: each shares the pages of the pre-imported
interpreter (TensorFlow, about 500 MB) copy-on-write, and a task's ru_maxrss even starts at the
server's high-water mark. The measure is PSS, the proportional set size Linux keeps in
/proc/PID/smaps_rollup: a page shared by n processes counts 1/n in each, so the sum over a set of
processes is the memory the set holds. A forked run's sum includes its session and server (the
entry `preload`; the server alone, not the other labctls' sessions it has forked), which the
tasks' shared pages are split with. Where PSS is unknown (macOS), RSS, and the record says
which.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psutil

SAMPLE_S = 0.5
MIB = 1 << 20
INTERPRETER = "preload"  # the server and session that forked the tasks


def _tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    """A process and everything it started (a shimmed task's program)."""
    found: dict[int, None] = {}
    todo = [pid]
    while todo:
        pid = todo.pop()
        if pid not in found:  # a pid reused during the pass could make a cycle
            found[pid] = None
            todo += children.get(pid, [])
    return list(found)


def _size(pid: int) -> tuple[float, str] | None:
    """(MiB, measure) of one process now; None once it is gone."""
    try:
        full = psutil.Process(pid).memory_full_info()
    except (psutil.Error, OSError):
        return None
    pss = getattr(full, "pss", None)
    return (pss / MIB, "pss") if pss is not None else (full.rss / MIB, "rss")


class Sampler:
    """Samples `pids()` (entry name -> the processes whose sizes it sums, with their children
    unless they are in `alone()`) every SAMPLE_S in a thread of its own, until `stop()` returns
    the peaks."""

    def __init__(self, pids: Callable[[], dict[str, list[int]]],
                 alone: Callable[[], set[int]] = set) -> None:
        self.pids, self.alone = pids, alone
        self.peaks: dict[str, float] = {}
        self.peak_total = 0.0
        self.measure = "pss"
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        """Each process counts once, under the first entry whose processes started it: the
        server's sessions and tasks are its children, and the tasks come first."""
        total = 0.0
        seen: set[int] = set()
        children: dict[int, list[int]] = {}
        for proc in psutil.process_iter(["ppid"]):  # one pass over /proc for every entry
            children.setdefault(proc.info["ppid"], []).append(proc.pid)
        alone = self.alone()
        for name, pids in self.pids().items():
            procs = [p for pid in pids for p in ([pid] if pid in alone else _tree(pid, children))
                     if p not in seen]
            seen.update(procs)
            sizes = [s for s in map(_size, procs) if s is not None]
            if not sizes:
                continue
            mib = sum(size for size, _measure in sizes)
            self.measure = sizes[0][1]
            self.peaks[name] = max(self.peaks.get(name, 0.0), mib)
            total += mib
        self.peak_total = max(self.peak_total, total)

    def _loop(self) -> None:
        while not self.done.wait(SAMPLE_S):
            self.sample()

    def stop(self) -> dict[str, Any]:
        """{"measure", "peak_mib" (the largest sum at one sample), "tasks": {name: peak_mib}}."""
        self.done.set()
        self.thread.join()
        return {"measure": self.measure, "peak_mib": round(self.peak_total, 1),
                "tasks": {name: round(mib, 1) for name, mib in sorted(self.peaks.items())}}
