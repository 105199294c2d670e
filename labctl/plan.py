"""From a lab and command-line options to what to run, validated before anything starts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from labctl import faults
from labctl.errors import UsageError
from labctl.faults import KillSpec
from labctl.labs import ArgValue, Lab
from labctl.tasks import TaskSpec, build_tasks, find_task


def resolve_counts(lab: Lab, overrides: Mapping[str, int | None]) -> dict[str, int]:
    """Replica counts: lab.toml defaults, overridden by --workers/--ps within [min, max]."""
    counts = {t: c.default for t, c in lab.tasks.items()}
    for task_type, value in overrides.items():
        if value is None:
            continue
        flag = f"--{'workers' if task_type == 'worker' else task_type}"
        count = lab.tasks.get(task_type)
        if count is None:
            has = ", ".join(lab.tasks) or "no task types: it is a single process"
            raise UsageError(f"lab {lab.name} takes no {flag} (it has {has})")
        if not count.min <= value <= count.max:
            raise UsageError(
                f"{flag} {value} is outside {count.min}..{count.max} for lab {lab.name}"
            )
        counts[task_type] = value
    return counts


def resolve_args(lab: Lab, overrides: Mapping[str, ArgValue | None]) -> dict[str, ArgValue]:
    """The lab's [args] with their defaults, overridden by --steps/--dataset where given."""
    args = dict(lab.args)
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in args:
            raise UsageError(f"lab {lab.name} takes no --{name.replace('_', '-')}")
        args[name] = value
    return args


def args_argv(args: Mapping[str, ArgValue]) -> list[str]:
    """`{"steps": 1000, "fast": True}` -> ["--steps", "1000", "--fast"]."""
    argv: list[str] = []
    for name, value in args.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        else:
            argv += [flag, str(value)]
    return argv


def resolve_kills(specs: Sequence[str], tasks: Sequence[TaskSpec]) -> list[KillSpec]:
    """Parse --kill TASK@STEP options and check that each names a task of this job, once."""
    kills = [faults.parse_kill(s) for s in specs]
    for kill in kills:
        find_task(tasks, kill.task.name)
    return kills


@dataclass(frozen=True)
class LabPlan:
    lab: Lab
    counts: dict[str, int]
    tasks: list[TaskSpec]
    args: dict[str, ArgValue]
    kills: list[KillSpec]


def plan_lab(
    lab: Lab,
    counts: Mapping[str, int | None],
    args: Mapping[str, ArgValue | None],
    kills: Sequence[str],
) -> LabPlan:
    resolved = resolve_counts(lab, counts)
    tasks = build_tasks(resolved)
    if kills and not lab.progress:
        raise UsageError(f"lab {lab.name} prints no progress, so --kill TASK@STEP cannot apply")
    return LabPlan(lab, resolved, tasks, resolve_args(lab, args), resolve_kills(kills, tasks))
