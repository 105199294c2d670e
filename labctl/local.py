"""The local target: every task is an OS process on free 127.0.0.1 ports.

Each task runs in its own session (process group), so Ctrl-C reaches only labctl, which then
stops every task itself. When labctl is SIGKILLed, a task still dies with it, by one of two
mechanisms (LABCTL_SUPERVISION selects; the tests run both on Linux):

- `pdeathsig` (the default on Linux): the kernel's PR_SET_PDEATHSIG, set between fork and exec;
- `pipe` (the default elsewhere, e.g. macOS): the task runs under `labctl.shim`, which kills its
  process group when the pipe whose only write end labctl holds reaches EOF.

SIGTERM, not SIGINT, ends TensorFlow servers.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from labctl import procs, rundir, supervise, taskenv
from labctl.errors import UsageError
from labctl.job import JobSpec, Lines, Outcome, stop_gracefully
from labctl.ports import free_ports
from labctl.procs import RUN_ENV
from labctl.record import RunRecord
from labctl.rundir import RunDir
from labctl.states import Target
from labctl.tasks import SINGLE, TaskSpec
from labctl.tfconfig import cluster_spec, tf_config

PR_SET_PDEATHSIG = 1
DRAIN_S = 2.0  # how long to wait for output after exit (a grandchild may hold the pipe)
SUPERVISION_ENV = "LABCTL_SUPERVISION"
MECHANISMS = ("pdeathsig", "pipe")
# Loaded before any fork: the child only calls it. Linux only (prctl); elsewhere the pipe.
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def mechanism() -> str:
    """How tasks die with labctl here: $LABCTL_SUPERVISION, else pdeathsig on Linux."""
    chosen = os.environ.get(SUPERVISION_ENV) or ("pdeathsig" if sys.platform == "linux"
                                                 else "pipe")
    if chosen not in MECHANISMS:
        raise UsageError(f"{SUPERVISION_ENV}={chosen!r}: use one of {', '.join(MECHANISMS)}")
    if chosen == "pdeathsig" and sys.platform != "linux":
        raise UsageError(f"{SUPERVISION_ENV}=pdeathsig needs Linux: use pipe (the default)")
    return chosen


def _die_with_parent(parent: int) -> None:
    """Runs in the child between fork and exec; only async-signal-safe work here.

    The kernel ties PDEATHSIG to the thread that forked, so tasks are started from the thread
    that lives as long as the run (the controller's, i.e. the main thread)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # type: ignore[union-attr]
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class ParentPipe:
    """The read end every shimmed task inherits; labctl holds the only write end, for life
    (never closed: labctl's exit closes it, which is the signal)."""

    _ends: tuple[int, int] | None = None

    @classmethod
    def read_end(cls) -> int:
        if cls._ends is None:
            cls._ends = os.pipe()  # both non-inheritable; the read end is passed explicitly
        return cls._ends[0]


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class ProcessHandle:
    def __init__(self, task: TaskSpec, proc: subprocess.Popen[str], lines: Lines) -> None:
        self.task, self.proc = task, proc
        self.eof = threading.Event()
        self.exited_at: float | None = None
        self.reaped = False
        threading.Thread(target=self._read, args=(lines,), daemon=True).start()

    def _read(self, lines: Lines) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            lines.put((self.task, raw.rstrip("\n")))
        self.eof.set()

    def poll(self) -> int | None:
        code = self.proc.poll()
        if code is None:
            return None
        if not self.reaped:
            # The task is over: like a container, nothing it started may outlive it.
            self.reaped = True
            self.exited_at = time.monotonic()
            _signal_group(self.proc.pid, signal.SIGKILL)
        if not self.eof.is_set() and time.monotonic() - (self.exited_at or 0) < DRAIN_S:
            return None
        return code

    def kill(self) -> None:
        _signal_group(self.proc.pid, signal.SIGKILL)

    def wait(self, timeout: float | None) -> bool:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        self.eof.wait(DRAIN_S)
        self.poll()  # reaps the group's leftovers
        return True

    def terminate(self) -> None:
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)


class LocalBackend:
    """Starts tasks as child processes: `command(task)` and `env(task)` say what to run."""

    def __init__(
        self,
        command: Callable[[TaskSpec], list[str]],
        env: Callable[[TaskSpec], Mapping[str, str]],
        cwd: Path,
    ) -> None:
        self.command, self.env, self.cwd = command, env, cwd

    def start(self, task: TaskSpec, lines: Lines) -> ProcessHandle:
        parent = os.getpid()
        options: dict[str, Any] = {}
        argv = self.command(task)
        if mechanism() == "pipe":
            fd = ParentPipe.read_end()
            argv = [sys.executable, "-m", "labctl.shim", str(fd), "--", *argv]
            options["pass_fds"] = (fd,)
        else:  # only prctl and getppid run there
            options["preexec_fn"] = lambda: _die_with_parent(parent)
        proc = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=dict(self.env(task)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
            **options,
        )
        return ProcessHandle(task, proc, lines)

    def stop_all(self, handles: list[ProcessHandle], grace_s: float) -> None:
        stop_gracefully(handles, grace_s)


def execute(
    group: str,
    spec: JobSpec,
    record: RunRecord,
    command: Callable[[TaskSpec, RunDir], list[str]],
    cwd: Path | None,
    quiet: bool,
) -> tuple[RunDir, Outcome]:
    """Run `spec` as local processes in a new run directory of `group`."""
    tasks = [t for t in spec.tasks if t.type != SINGLE]
    ports = dict(zip(tasks, free_ports(len(tasks)), strict=True))
    cluster = cluster_spec(tasks, lambda t: f"127.0.0.1:{ports[t]}")
    left = rundir.reap_leftovers()
    if left:
        print(f"labctl: killed {len(left)} process(es) left by an aborted run", file=sys.stderr)
    run = rundir.create(group)

    def env(task: TaskSpec) -> dict[str, str]:
        marked = {RUN_ENV: str(run.path)}
        if task in ports:
            marked["TF_CONFIG"] = tf_config(cluster, task)
        return taskenv.local(marked)

    backend = LocalBackend(lambda t: command(t, run), env, cwd or run.path)
    try:
        record = record.update(target=Target.LOCAL, cluster=cluster)
        return run, supervise.execute(run, spec, record, backend, quiet)
    finally:
        # Backstop: a task whose start Ctrl-C interrupted has no handle to stop; its marker
        # still finds it (as it finds whatever a task started itself).
        procs.kill_run(run.path)
