"""Finding a run's processes by the LABCTL_RUN variable every task (and its children) inherits.

Tasks die with labctl (local.py), but what a task started itself may escape its process group;
the environment marks those too, so `labctl run` and `labctl clean` can reap what an aborted run
left behind, and tests can prove that nothing is left. psutil reads the environments on Linux
(/proc) and macOS (sysctl; the user's own processes only, which is all labctl starts).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import psutil

RUN_ENV = "LABCTL_RUN"


def run_processes() -> dict[int, Path]:
    """pid -> run directory, for every process that carries LABCTL_RUN."""
    found = {}
    for proc in psutil.process_iter():
        try:
            run = proc.environ().get(RUN_ENV)
        except (psutil.Error, OSError):  # gone, a zombie, or not ours to read
            continue
        if run:
            found[proc.pid] = Path(run)
    return found


def kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def kill_run(run: Path, wait_s: float = 2.0) -> list[int]:
    """Kill every process marked with `run` and wait (up to `wait_s`) until they are gone."""
    pids = [pid for pid, owner in run_processes().items() if owner == run]
    kill(pids)
    deadline = time.monotonic() + wait_s
    left = pids
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = run_processes()
        left = [pid for pid in left if pid in alive]
    return pids
