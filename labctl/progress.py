"""PROGRESS lines, global-step tracking and the stall watchdog, as pure logic over timestamps."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from labctl.tasks import TaskSpec

# Before the first PROGRESS line the watchdog waits at least this long: starting several
# TensorFlow processes on a busy 2-core laptop can take half a minute and more.
STARTUP_S = 120.0

_LINE = re.compile(r"^PROGRESS((?:\s+[a-z_]+=\S+)+)\s*$")


@dataclass(frozen=True)
class Progress:
    step: int
    loss: float | None = None
    accuracy: float | None = None


def parse_progress(line: str) -> Progress | None:
    """`PROGRESS step=300 loss=0.41 accuracy=0.88` -> Progress; anything else -> None."""
    match = _LINE.match(line.strip())
    if not match:
        return None
    fields = dict(pair.split("=", 1) for pair in match.group(1).split())
    try:
        step = int(fields["step"])
        loss = float(fields["loss"]) if "loss" in fields else None
        accuracy = float(fields["accuracy"]) if "accuracy" in fields else None
    except (KeyError, ValueError):
        return None
    return Progress(step, loss, accuracy)


@dataclass
class StepTracker:
    """Global step = the highest step any task reported; activity = any task's step changing.

    A restarted ps makes workers restore an older checkpoint, so a task's step may go down and up
    again: that is progress too, while the displayed global step never goes back.
    """

    started: float
    global_step: int = 0
    loss: float | None = None
    accuracy: float | None = None
    last_advance: float = field(init=False)
    last_step: dict[TaskSpec, int] = field(default_factory=dict)
    last_report: dict[TaskSpec, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.last_advance = self.started

    def report(self, task: TaskSpec, progress: Progress, now: float) -> None:
        if self.last_step.get(task) != progress.step:
            self.last_advance = now
        self.last_step[task] = progress.step
        self.last_report[task] = now
        if progress.step < self.global_step:
            return  # metrics follow the task that is furthest ahead
        self.global_step = progress.step
        if progress.loss is not None:
            self.loss = progress.loss
        if progress.accuracy is not None:
            self.accuracy = progress.accuracy

    def stalled(self, now: float, timeout_s: float) -> bool:
        if not self.last_report:
            return now - self.started >= max(timeout_s, STARTUP_S)
        return now - self.last_advance >= timeout_s

    def not_reporting(self, tasks: list[TaskSpec], now: float, timeout_s: float) -> list[TaskSpec]:
        """Tasks that should report but have been silent for `timeout_s` (or never reported).

        Only tasks that printed PROGRESS at least once are expected to (a ps never does); when no
        task ever reported, every task is named.
        """
        reporters = [t for t in tasks if t in self.last_report] or list(tasks)
        return [t for t in reporters if now - self.last_report.get(t, self.started) >= timeout_s]
