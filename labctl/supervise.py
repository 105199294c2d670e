"""Supervise a JobSpec on any backend inside a run directory, keeping run.json up to date."""

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
from labctl.record import RunRecord
from labctl.rundir import RunDir
from labctl.states import RunStatus


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP end a run like Ctrl-C does: the controller stops every task."""

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
    record: RunRecord,
    backend: Backend,
    quiet: bool,
    extra: Callable[[], dict[str, Any]] = dict,
) -> Outcome:
    """Run `spec` on `backend`. run.json holds `record`, then the controller's snapshots, then
    the outcome and `extra()` (target-specific facts, RunRecord fields)."""
    record = record.update(run_id=run.run_id, status=RunStatus.RUNNING,
                           launcher_pid=os.getpid(), started=rundir.iso(time.time()))
    run.save(record)
    width = max((len(task.name) for task in spec.tasks), default=0)
    display = make_display(spec.title, spec.total_steps, quiet, width)
    controller = Controller(spec, backend, run, display,
                            lambda snap: run.save(record.update(**snap)))
    try:
        with sigterm_as_interrupt():
            outcome = controller.run()
    except BaseException:
        run.save(record.update(status=RunStatus.FAILED, reason="labctl itself failed"))
        raise
    run.save(record.update(
        **controller.snapshot(), **extra(),
        status=outcome.status,
        reason=outcome.reason or None,
        failed_task=outcome.failed_task,
        finished=rundir.iso(time.time()),
        wall_time_s=outcome.wall_time_s,
    ))
    return outcome
