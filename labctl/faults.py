"""Fault injection: `--kill TASK@STEP` kills a task once the global step passes STEP."""

from __future__ import annotations

import re
from dataclasses import dataclass

from labctl.errors import UsageError
from labctl.tasks import TaskSpec, parse_task

_SPEC = re.compile(r"^([a-z]+:\d+)@(\d+)$")


@dataclass(frozen=True)
class KillSpec:
    task: TaskSpec
    step: int

    def __str__(self) -> str:
        return f"{self.task.name}@{self.step}"


def parse_kill(text: str) -> KillSpec:
    """`worker:1@300` -> KillSpec(worker:1, 300)."""
    match = _SPEC.match(text.strip())
    if not match:
        raise UsageError(f"bad --kill {text!r}: expected TASK@STEP, e.g. worker:1@300 or ps:0@500")
    return KillSpec(parse_task(match.group(1)), int(match.group(2)))


def due(pending: list[KillSpec], global_step: int) -> list[KillSpec]:
    """The kills whose step the global step has reached."""
    return [k for k in pending if global_step >= k.step]
