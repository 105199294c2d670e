"""The task model shared by every target: a job is a list of typed, indexed tasks."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from labctl.errors import UsageError

# TFJob's replica types, in the order tasks are started and listed.
TASK_TYPES = ("chief", "ps", "worker", "evaluator")
# The one process of a lab without a [tasks] table: it gets no TF_CONFIG.
SINGLE = "main"

_NAME = re.compile(r"^([a-z]+):(\d+)$")


@dataclass(frozen=True, order=True)
class TaskSpec:
    type: str
    index: int

    @property
    def name(self) -> str:
        """`worker:1`, or `main` for a single-process job."""
        return SINGLE if self.type == SINGLE else f"{self.type}:{self.index}"

    @property
    def slug(self) -> str:
        """File-name form: `worker-1` (log files, tasks/*.json)."""
        return SINGLE if self.type == SINGLE else f"{self.type}-{self.index}"


def parse_task(text: str) -> TaskSpec:
    """`worker:1` -> TaskSpec("worker", 1); `main` (or `main:0`) for the single process."""
    if text in (SINGLE, f"{SINGLE}:0"):
        return TaskSpec(SINGLE, 0)
    match = _NAME.match(text)
    if not match or match.group(1) not in TASK_TYPES:
        raise UsageError(
            f"bad task name {text!r}: expected TYPE:INDEX with TYPE one of {', '.join(TASK_TYPES)}"
        )
    return TaskSpec(match.group(1), int(match.group(2)))


def build_tasks(counts: Mapping[str, int]) -> list[TaskSpec]:
    """Tasks for the given replica counts in start order; no counts = one single process."""
    if not counts:
        return [TaskSpec(SINGLE, 0)]
    unknown = set(counts) - set(TASK_TYPES)
    if unknown:
        raise UsageError(f"unknown task type(s): {', '.join(sorted(unknown))}")
    return [TaskSpec(t, i) for t in TASK_TYPES for i in range(counts.get(t, 0))]


def find_task(tasks: Iterable[TaskSpec], name: str) -> TaskSpec:
    """The task called `name`, or a UsageError listing the valid names."""
    wanted = parse_task(name)
    tasks = list(tasks)
    if wanted not in tasks:
        valid = ", ".join(t.name for t in tasks)
        raise UsageError(f"no task {name!r} in this job; tasks are: {valid}")
    return wanted
