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
    """The lab's [args] with their defaults, overridden where `overrides` gives a value."""
    args = dict(lab.args)
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in args:
            raise UsageError(f"lab {lab.name} takes no --{name.replace('_', '-')}")
        args[name] = value
    return args


def arg_overrides(lab: Lab, steps: int | None, dataset: str | None,
                  sets: Sequence[str]) -> dict[str, ArgValue | None]:
    """--steps, --dataset and each `--set NAME=VALUE`, the value read as the type of the
    default in the lab's [args]: `--set rows=1000` -> {"rows": 1000}."""
    overrides: dict[str, ArgValue | None] = {"steps": steps, "dataset": dataset}
    for text in sets:
        name, sep, raw = text.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in lab.args:
            raise UsageError(f"bad --set {text!r}: expected NAME=VALUE, NAME one of lab "
                             f"{lab.name}'s options: {', '.join(lab.args) or 'it has none'}")
        overrides[name] = _typed(raw.strip(), lab.args[name], text)
    return overrides


def _typed(raw: str, default: ArgValue, text: str) -> ArgValue:
    if isinstance(default, bool):
        if raw.lower() not in ("true", "false"):
            raise UsageError(f"bad --set {text!r}: the value must be true or false")
        return raw.lower() == "true"
    if isinstance(default, int | float):
        kind = type(default)
        try:
            return kind(raw)
        except ValueError:
            raise UsageError(f"bad --set {text!r}: the value must be a "
                             f"{'whole number' if kind is int else 'number'}") from None
    return raw


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
