"""The Job controller: starts tasks, restarts them on failure, decides success, stops the rest.

Target-neutral: a Backend starts one task and returns a Handle; the local target runs processes,
other targets may run containers. Kubernetes Job semantics: success follows one task (the chief
or worker 0); failed tasks restart with back-off up to a limit; exit code 2 fails the job at once.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, TypeVar

from labctl import faults, restart
from labctl.display import Display, is_noise
from labctl.faults import KillSpec
from labctl.progress import StepTracker, parse_progress
from labctl.restart import RestartPolicy
from labctl.rundir import RunDir
from labctl.states import RunStatus, Shutdown, TaskStatus
from labctl.tasks import TaskSpec

STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this long
TAIL_LINES = 15

Lines = queue.Queue[tuple[TaskSpec, str]]


class Handle(Protocol):
    def poll(self) -> int | None:
        """The exit code once the task has ended and its output is drained, else None."""

    def kill(self) -> None:
        """SIGKILL the task (fault injection)."""

    def terminate(self) -> None:
        """Ask the task to stop (SIGTERM)."""


H = TypeVar("H", bound=Handle)


class Backend(Protocol[H]):
    """Runs tasks as handles of one kind (processes, containers, Kubernetes Jobs)."""

    def start(self, task: TaskSpec, lines: Lines) -> H:
        """Start one attempt of `task`; its output lines go to `lines`."""

    def stop_all(self, handles: list[H], grace_s: float) -> None:
        """Terminate these tasks, wait up to `grace_s`, then kill what is left."""


class Waitable(Handle, Protocol):
    def wait(self, timeout: float | None) -> bool:
        """Wait up to `timeout` s (None: as long as it takes) for the task to end and its output
        to drain; whether it did."""


W = TypeVar("W", bound=Waitable)


def stop_gracefully(handles: list[W], grace_s: float) -> None:
    """SIGTERM every task, give them `grace_s` in all, then SIGKILL what is left and wait."""
    for handle in handles:
        handle.terminate()
    deadline = time.monotonic() + grace_s
    for handle in handles:
        if not handle.wait(max(0.0, deadline - time.monotonic())):
            handle.kill()
            handle.wait(None)


@dataclass
class JobSpec:
    title: str
    tasks: list[TaskSpec]
    success: TaskSpec
    shutdown: Shutdown
    policy: RestartPolicy
    stall_timeout_s: float | None  # fail when the global step stops advancing this long
    timeout_s: float | None  # fail when the whole job takes longer
    kills: list[KillSpec] = field(default_factory=list)
    total_steps: int | None = None
    # done-queue safety net: how long after success (or after the last restart, which needs
    # time to start TensorFlow) the other tasks may take to end by themselves
    after_success_grace_s: float = 20.0


@dataclass
class TaskState:
    spec: TaskSpec
    status: TaskStatus = TaskStatus.PENDING
    handle: Handle | None = None
    restarts: int = 0
    exit_code: int | None = None
    restart_at: float = 0.0
    started_s: float | None = None  # launcher start to the task's first start (labctl bench)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "type": self.spec.type,
            "index": self.spec.index,
            "status": self.status,
            "exit_code": self.exit_code,
            "restarts": self.restarts,
            "started_s": self.started_s,
        }


class JobFailed(Exception):
    def __init__(self, reason: str, task: TaskState | None = None) -> None:
        super().__init__(reason)
        self.task = task


@dataclass
class Outcome:
    status: RunStatus
    reason: str
    failed_task: str | None
    tail: list[str]
    global_step: int
    wall_time_s: float


class Controller:
    def __init__(
        self,
        spec: JobSpec,
        backend: Backend[Any],
        run: RunDir,
        display: Display,
        on_change: Callable[[dict[str, Any]], None],
    ) -> None:
        self.spec, self.backend, self.rundir, self.display = spec, backend, run, display
        self.on_change = on_change
        self.states = {t: TaskState(t) for t in spec.tasks}
        self.lines: Lines = queue.Queue()
        self.logs: dict[TaskSpec, IO[str]] = {}
        self.pending_kills = list(spec.kills)
        self.events: dict[str, list[dict[str, Any]]] = {"kills": [], "restarts": []}
        self.started = time.monotonic()
        self.tracker = StepTracker(self.started)
        self.succeeded_at: float | None = None
        self.stop_sent_at: float | None = None
        self.last_start = self.started

    # --- bookkeeping -------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "tasks": [s.summary() for s in self.states.values()],
            "kills": self.events["kills"],
            "restarts": self.events["restarts"],
            "global_step": self.tracker.global_step,
        }

    def _log(self, task: TaskSpec, text: str) -> None:
        log = self.logs.get(task)
        if log is None:
            log = self.logs[task] = self.rundir.log(task).open("a", encoding="utf-8")
        log.write(text + "\n")
        log.flush()

    def _note(self, task: TaskSpec | None, text: str) -> None:
        """A launcher message: on screen, and in the task's log as a marker line."""
        if task is not None:
            self._log(task, f"----- labctl: {text} -----")
        self.display.note(text)

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    # --- task lifecycle -----------------------------------------------------------------------
    def _start(self, state: TaskState) -> None:
        state.handle = self.backend.start(state.spec, self.lines)
        state.status = TaskStatus.RUNNING
        self.last_start = time.monotonic()
        if state.started_s is None:
            state.started_s = round(self.last_start - self.started, 3)

    def _on_exit(self, state: TaskState, code: int) -> None:
        state.exit_code, state.handle = code, None
        how = restart.describe_exit(code)
        if self.succeeded_at is not None and (
            self.spec.shutdown == Shutdown.LAUNCHER or self.stop_sent_at is not None
        ):  # being stopped by the launcher
            state.status = TaskStatus.SUCCEEDED if code == 0 else TaskStatus.STOPPED
            return
        if code == 0:
            state.status = TaskStatus.SUCCEEDED
            if state.spec == self.spec.success:
                self.succeeded_at = time.monotonic()
                self._note(None, f"{state.spec.name} succeeded: the job is done")
            return
        if code == restart.EXIT_CONFIG_ERROR and self.succeeded_at is None:
            state.status = TaskStatus.FAILED
            raise JobFailed(f"{state.spec.name} exited 2 (configuration error)", state)
        decision = restart.decide(self.spec.policy, code, state.restarts)
        if decision.restart:
            state.status = TaskStatus.BACKOFF
            state.restart_at = time.monotonic() + decision.delay_s
            self.events["restarts"].append(
                {"task": state.spec.name, "exit_code": code, "attempt": state.restarts + 1,
                 "delay_s": decision.delay_s, "at_s": round(self._elapsed(), 2)}
            )
            self._note(state.spec, f"{state.spec.name} {how}; {decision.reason} in "
                                   f"{decision.delay_s:g} s")
            self.on_change(self.snapshot())
            return
        state.status = TaskStatus.FAILED
        if state.spec == self.spec.success:
            raise JobFailed(f"{state.spec.name} {how} ({decision.reason})", state)
        self._note(state.spec, f"{state.spec.name} {how} ({decision.reason}); the job goes on "
                               "without it")
        self.on_change(self.snapshot())

    def _restart_due(self, now: float) -> None:
        for state in self.states.values():
            if state.status == TaskStatus.BACKOFF and now >= state.restart_at:
                state.restarts += 1
                self._note(state.spec, f"restarting {state.spec.name} (restart {state.restarts})")
                self._start(state)

    def _inject_faults(self) -> None:
        for kill in faults.due(self.pending_kills, self.tracker.global_step):
            state = self.states[kill.task]
            if state.status != TaskStatus.RUNNING or state.handle is None:
                continue  # between attempts: kill it once it runs again
            self.pending_kills.remove(kill)
            self._note(kill.task, f"--kill {kill}: killing {kill.task.name} at global step "
                                  f"{self.tracker.global_step}")
            state.handle.kill()
            self.events["kills"].append({"task": kill.task.name, "step": kill.step,
                                         "global_step": self.tracker.global_step,
                                         "at_s": round(self._elapsed(), 2)})

    def _watchdog(self, now: float) -> None:
        if self.succeeded_at is not None:
            return
        timeout = self.spec.stall_timeout_s
        if timeout and self.tracker.stalled(now, timeout):
            silent = [self.states[t]
                      for t in self.tracker.not_reporting(self.spec.tasks, now, timeout)]
            # a dead task that never reports (a ps) is the likeliest cause: name it too
            dead = [s for s in self.states.values()
                    if s.status == TaskStatus.FAILED and s not in silent]
            names = ", ".join(f"{s.spec.name} ({s.status})" for s in silent + dead)
            if not self.tracker.last_report:
                what = f"no task reported progress within {now - self.started:.0f} s of start"
            else:
                what = f"global step stuck at {self.tracker.global_step} for {timeout:g} s"
            # show the output of a task that died, else of one that said something
            shown = sorted(silent + dead,
                           key=lambda s: (s.status == TaskStatus.RUNNING, not s.tail))
            raise JobFailed(f"stalled: {what}; not reporting: {names}",
                            shown[0] if shown else None)
        if self.spec.timeout_s and now - self.started >= self.spec.timeout_s:
            running = ", ".join(s.spec.name for s in self.states.values()
                                if s.status == TaskStatus.RUNNING)
            raise JobFailed(f"timed out after {self.spec.timeout_s:g} s; still running: {running}")

    def _after_success(self, now: float) -> None:
        """Stop what is left: at once ("launcher"), or once the others had time to end by
        themselves ("done-queue": they may still restart and finish); SIGKILL what ignores
        SIGTERM."""
        assert self.succeeded_at is not None
        done_queue = self.spec.shutdown == Shutdown.DONE_QUEUE
        if done_queue and self.stop_sent_at is None:
            self._restart_due(now)
            if now - max(self.succeeded_at, self.last_start) < self.spec.after_success_grace_s:
                return
        for state in self.states.values():
            if state.status == TaskStatus.BACKOFF:
                state.status = TaskStatus.STOPPED
        running = [s for s in self.states.values() if s.status == TaskStatus.RUNNING and s.handle]
        if not running:
            return
        if self.stop_sent_at is not None:
            if now - self.stop_sent_at >= STOP_GRACE_S:
                for state in running:
                    self._note(state.spec, f"{state.spec.name} ignored SIGTERM: killing it")
                    state.handle.kill()  # type: ignore[union-attr]
                self.stop_sent_at = now  # once per grace period
            return
        for state in running:
            if done_queue:
                self._note(state.spec, f"{state.spec.name} still running "
                                       f"{self.spec.after_success_grace_s:g} s after success: "
                                       "terminating it")
            state.handle.terminate()  # type: ignore[union-attr]
        self.stop_sent_at = now

    def _finished(self) -> bool:
        return self.succeeded_at is not None and all(
            s.status not in (TaskStatus.RUNNING, TaskStatus.BACKOFF) for s in self.states.values()
        )

    # --- main loop ----------------------------------------------------------------------------
    def _pump(self, wait_s: float) -> None:
        """Collect exits first, then drain output (so an attempt's last lines precede what
        follows its exit), then act on the exits."""
        exits = []
        for state in self.states.values():
            if state.status == TaskStatus.RUNNING and state.handle is not None:
                code = state.handle.poll()
                if code is not None:
                    exits.append((state, code))
        try:
            task, text = self.lines.get(timeout=0 if exits else wait_s)
            self._line(task, text)
            while True:
                task, text = self.lines.get_nowait()
                self._line(task, text)
        except queue.Empty:
            pass
        for state, code in exits:
            self._on_exit(state, code)

    def _line(self, task: TaskSpec, text: str) -> None:
        self._log(task, text)
        self.states[task].tail.append(text)
        progress = parse_progress(text)
        if progress is None:
            if not is_noise(text):
                self.display.line(task, text)
            return
        self.tracker.report(task, progress, time.monotonic())
        self.display.progress(self.tracker)

    def run(self) -> Outcome:
        try:
            for state in self.states.values():
                self._start(state)
            self.on_change(self.snapshot())
            while not self._finished():
                self._pump(0.2)
                now = time.monotonic()
                if self.succeeded_at is None:
                    self._restart_due(now)
                    self._inject_faults()
                    self._watchdog(now)
                else:
                    self._after_success(now)
            return self._outcome(RunStatus.SUCCEEDED, "")
        except JobFailed as failed:
            return self._outcome(RunStatus.FAILED, str(failed), failed.task)
        except KeyboardInterrupt:
            return self._outcome(RunStatus.INTERRUPTED, "interrupted (Ctrl-C or SIGTERM)")
        finally:
            self._stop_all()

    def _stop_all(self) -> None:
        handles = [s.handle for s in self.states.values() if s.handle is not None]
        self.backend.stop_all(handles, STOP_GRACE_S)
        for state in self.states.values():
            if state.handle is not None:
                state.exit_code = state.handle.poll()
                state.status, state.handle = TaskStatus.STOPPED, None
            elif state.status in (TaskStatus.BACKOFF, TaskStatus.PENDING):
                state.status = TaskStatus.STOPPED
        try:  # the last lines of stopped tasks
            while True:
                task, text = self.lines.get_nowait()
                self._log(task, text)
        except queue.Empty:
            pass
        for log in self.logs.values():
            log.close()
        self.display.close()

    def _outcome(self, status: RunStatus, reason: str, task: TaskState | None = None) -> Outcome:
        return Outcome(
            status=status,
            reason=reason,
            failed_task=task.spec.name if task else None,
            tail=list(task.tail) if task else [],
            global_step=self.tracker.global_step,
            wall_time_s=round(self._elapsed(), 2),
        )
