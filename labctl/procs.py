"""Finding a run's processes by the LABCTL_RUN variable every task (and its children) inherits.

PR_SET_PDEATHSIG kills a task when labctl dies, but not what the task started itself; the
environment marks those too, so `labctl run` and `labctl clean` can reap what an aborted run
left behind, and tests can prove that nothing is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

RUN_ENV = "LABCTL_RUN"
_KEY = RUN_ENV.encode() + b"="


def run_processes() -> dict[int, Path]:
    """pid -> run directory, for every process that carries LABCTL_RUN."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        for item in environ.split(b"\0"):
            if item.startswith(_KEY):
                found[int(entry.name)] = Path(os.fsdecode(item[len(_KEY):]))
                break
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
