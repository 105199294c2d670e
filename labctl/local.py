"""The local target: every task is an OS process on free 127.0.0.1 ports.

Each task runs in its own session (process group), so Ctrl-C reaches only labctl, which then
stops every task itself. When labctl is SIGKILLed, a task still dies with it, by one of two
mechanisms (LABCTL_SUPERVISION selects; the tests run both on Linux):

- `pdeathsig` (the default on Linux): the kernel's PR_SET_PDEATHSIG, set between fork and exec;
- `pipe` (the default elsewhere, e.g. macOS): the task runs under `labctl.shim`, which kills its
  process group when the pipe whose only write end labctl holds reaches EOF.

Lab tasks are forked from a pre-imported interpreter where that is possible (labctl.preload).

SIGTERM, not SIGINT, ends TensorFlow servers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from labctl import memory, preload, procs, rundir, supervise, taskenv
from labctl.errors import UsageError
from labctl.job import JobSpec, Lines, Outcome, stop_gracefully
from labctl.ports import free_ports
from labctl.procs import RUN_ENV
from labctl.record import RunRecord
from labctl.rundir import RunDir
from labctl.states import Target
from labctl.tasks import SINGLE, TaskSpec
from labctl.tfconfig import cluster_spec, tf_config

DRAIN_S = 2.0  # how long to wait for output after exit (a grandchild may hold the pipe)
SUPERVISION_ENV = "LABCTL_SUPERVISION"
MECHANISMS = ("pdeathsig", "pipe")


def mechanism() -> str:
    """How tasks die with labctl here: $LABCTL_SUPERVISION, else pdeathsig on Linux."""
    chosen = os.environ.get(SUPERVISION_ENV) or ("pdeathsig" if sys.platform == "linux"
                                                 else "pipe")
    if chosen not in MECHANISMS:
        raise UsageError(f"{SUPERVISION_ENV}={chosen!r}: use one of {', '.join(MECHANISMS)}")
    if chosen == "pdeathsig" and sys.platform != "linux":
        raise UsageError(f"{SUPERVISION_ENV}=pdeathsig needs Linux: use pipe (the default)")
    return chosen


def forking(no_preload: bool = False) -> bool:
    """Whether lab tasks are forked from the pre-imported interpreter (labctl.preload): on
    Linux (it needs PR_SET_PDEATHSIG) with the default supervision, unless `--no-preload` or
    LABCTL_PRELOAD=0 says no."""
    switch = os.environ.get(preload.SWITCH_ENV, "1")
    if switch not in ("0", "1"):
        raise UsageError(f"{preload.SWITCH_ENV}={switch!r}: use 1 (fork tasks from a "
                         "pre-imported interpreter, the default on Linux) or 0 (plain processes)")
    return not no_preload and switch == "1" and mechanism() == "pdeathsig"


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
    def __init__(self, task: TaskSpec, proc: subprocess.Popen[str] | preload.Forked,
                 lines: Lines) -> None:
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
    """Starts tasks as child processes: `command(task)` and `env(task)` say what to run; a
    `python SCRIPT ...` task is forked from `server` when there is one (labctl.preload)."""

    def __init__(
        self,
        command: Callable[[TaskSpec], list[str]],
        env: Callable[[TaskSpec], Mapping[str, str]],
        cwd: Path,
        server: preload.Server | None = None,
    ) -> None:
        self.command, self.env, self.cwd, self.server = command, env, cwd, server
        self.pids: dict[str, int] = {}  # each task's latest attempt

    def memory_pids(self) -> dict[str, list[int]]:
        """What labctl.memory samples: each task and, when it forks them, the interpreter."""
        found = {name: [pid] for name, pid in dict(self.pids).items()}
        if self.server and self.server.ready:
            found[memory.INTERPRETER] = [self.server.pid, self.server.server_pid]
        return found

    def memory_alone(self) -> set[int]:
        """The server, without the sessions it forked for other labctls."""
        return {self.server.server_pid} if self.server and self.server.ready else set()

    def start(self, task: TaskSpec, lines: Lines) -> ProcessHandle:
        handle = self._start(task, lines)
        self.pids[task.name] = handle.proc.pid
        return handle

    def _start(self, task: TaskSpec, lines: Lines) -> ProcessHandle:
        argv, env = self.command(task), dict(self.env(task))
        if self.server and argv[0] == sys.executable and argv[1:2] and argv[1].endswith(".py"):
            try:
                if self.server.usable(env):
                    return ProcessHandle(task, self.server.start(argv, env, self.cwd), lines)
                why = self.server.why_not(env)
            except OSError as err:
                why = str(err)
            print(f"labctl: {why}: tasks start as plain processes", file=sys.stderr)
            self.server = None
        parent = os.getpid()
        options: dict[str, Any] = {}
        if mechanism() == "pipe":
            fd = ParentPipe.read_end()
            argv = [sys.executable, "-m", "labctl.shim", str(fd), "--", *argv]
            options["pass_fds"] = (fd,)
        else:  # only prctl and getppid run there
            options["preexec_fn"] = lambda: procs.die_with_parent(parent)
        proc = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=env,
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
    preloaded: tuple[str, ...] = (),
) -> tuple[RunDir, Outcome]:
    """Run `spec` as local processes in a new run directory of `group`, forked from an
    interpreter that has imported `preloaded` if there are any (labctl.preload)."""
    tasks = [t for t in spec.tasks if t.type != SINGLE]
    ports = dict(zip(tasks, free_ports(len(tasks)), strict=True))
    cluster = cluster_spec(tasks, lambda t: f"127.0.0.1:{ports[t]}")
    left = rundir.reap_leftovers()
    if left:
        print(f"labctl: killed {len(left)} process(es) left by an aborted run", file=sys.stderr)
    # Started first: it imports while labctl prepares the run.
    server = preload.server(taskenv.local({}), preloaded) if preloaded else None
    run = rundir.create(group)

    def env(task: TaskSpec) -> dict[str, str]:
        marked = {RUN_ENV: str(run.path)}
        if task in ports:
            marked["TF_CONFIG"] = tf_config(cluster, task)
        return taskenv.local(marked)

    backend = LocalBackend(lambda t: command(t, run), env, cwd or run.path, server)
    sampler = memory.Sampler(backend.memory_pids, backend.memory_alone)
    try:
        record = record.update(target=Target.LOCAL, cluster=cluster)
        return run, supervise.execute(run, spec, record, backend, quiet,
                                      extra=lambda: {"memory": sampler.stop()})
    finally:
        sampler.done.set()
        # Backstop: a task whose start Ctrl-C interrupted has no handle to stop; its marker
        # still finds it (as it finds whatever a task started itself).
        procs.kill_run(run.path)
