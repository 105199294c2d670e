"""Finding a run's processes by the LABCTL_RUN variable every task (and its children) inherits.

Tasks die with labctl (local.py), but what a task started itself may escape its process group;
the environment marks those too, so `labctl run` and `labctl clean` can reap what an aborted run
left behind, and tests can prove that nothing is left. psutil reads the environments on Linux
(/proc) and macOS (sysctl; the user's own processes only, which is all labctl starts).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from pathlib import Path

import psutil

RUN_ENV = "LABCTL_RUN"
PR_SET_PDEATHSIG = 1
# Loaded before any fork: the child only calls it. Linux only (prctl).
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
# A task forked by labctl.forkserver shows its server's environment (the kernel's copy from exec):
# it writes its run to this directory of the server's instead, as a file named by its pid.
PRELOAD_DIR_ENV = "LABCTL_PRELOAD_DIR"


def run_processes() -> dict[int, Path]:
    """pid -> run directory, for every process that carries LABCTL_RUN."""
    found = {}
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
        except (psutil.Error, OSError):  # gone, a zombie, or not ours to read
            continue
        run = env.get(RUN_ENV) or _mark(env.get(PRELOAD_DIR_ENV), proc.pid)
        if run:
            found[proc.pid] = Path(run)
    return found


def mark_file(marks: str | None, pid: int) -> Path | None:
    """Where a task forked by labctl.forkserver records its run: its server's PRELOAD_DIR_ENV/PID
    (written by the task, removed by the server when it reaps it)."""
    return Path(marks) / str(pid) if marks else None


def _mark(marks: str | None, pid: int) -> str | None:
    """The run a forked task wrote to its server's directory (none for the server itself)."""
    path = mark_file(marks, pid)
    try:
        return (path.read_text() or None) if path else None
    except OSError:
        return None


def running(pid: int) -> bool:
    """Alive, not merely a zombie that its parent has yet to reap."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


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


def die_with_parent(parent: int) -> None:
    """Linux, in a child right after fork: SIGKILL when the thread that forked it ends (the
    kernel ties PR_SET_PDEATHSIG to that thread). Only async-signal-safe work here."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # type: ignore[union-attr]
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
