"""Run a JobSpec through labctl's Job controller on a non-local backend (docker, Kubernetes).

The controller (labctl.job) does the supervision for every target: prefixed logs, progress,
stall watchdog, --kill, success task, shutdown; a backend only starts and stops tasks. This module
is the run-record keeping around it, as labctl.local.execute does for local processes.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from labctl import rundir
from labctl.display import make_display
from labctl.job import Backend, Controller, JobSpec, Outcome
from labctl.rundir import RunDir


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP end a run like Ctrl-C does: the backend's stop_all cleans up."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def execute(
    run: RunDir,
    spec: JobSpec,
    record: dict[str, Any],
    backend: Backend,
    quiet: bool,
    extra: Callable[[], dict[str, Any]] = dict,
) -> Outcome:
    """Supervise `spec` on `backend`; run.json gets `record`, the controller's snapshots, the
    outcome and `extra()` (target-specific facts, e.g. the pods a task had)."""
    record = {**record, "run_id": run.run_id, "status": "running", "launcher_pid": os.getpid(),
              "started": rundir.iso(time.time())}
    run.write(record)
    display = make_display(spec.title, spec.total_steps, quiet)
    controller = Controller(spec, backend, run, display, lambda snap: run.write(record | snap))
    with sigterm_as_interrupt():
        outcome = controller.run()
    record |= controller.snapshot() | extra() | {
        "status": outcome.status,
        "reason": outcome.reason or None,
        "failed_task": outcome.failed_task,
        "finished": rundir.iso(time.time()),
        "wall_time_s": outcome.wall_time_s,
    }
    run.write(record)
    return outcome
