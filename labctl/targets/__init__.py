"""Where a run's tasks run: the registry of targets that the CLI consults.

Each target is one small object implementing `TargetBackend` (run a planned lab, clean up what a
run left outside its run directory) in a module of this package. A new target, say a real TFJob
operator, is one more module and one line in TARGETS.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from labctl.errors import UsageError
from labctl.job import JobSpec, Outcome
from labctl.labs import Lab
from labctl.plan import LabPlan
from labctl.record import RunRecord
from labctl.rundir import RunDir
from labctl.states import Target
from labctl.targets.docker import Docker
from labctl.targets.k8s import Kubernetes
from labctl.targets.local import Local


class TargetBackend(Protocol):
    name: Target
    options: tuple[str, ...]  # the target-specific options of `labctl run` it uses

    def run(self, lab: Lab, plan: LabPlan, spec: JobSpec, record: RunRecord,
            args: argparse.Namespace) -> tuple[RunDir, Outcome]:
        """Run the planned lab; the run directory and how it ended."""
        ...

    def clean(self, run: RunDir) -> list[str]:
        """Remove what the run left outside its run directory; what was removed."""
        ...


TARGETS: dict[Target, TargetBackend] = {t.name: t for t in (Local(), Docker(), Kubernetes())}
OPTIONS = list(dict.fromkeys(option for t in TARGETS.values() for option in t.options))


def get(name: str) -> TargetBackend:
    return TARGETS[Target(name)]


def of_run(run: RunDir) -> TargetBackend:
    """The target a recorded run used (local for a record without one)."""
    rec = run.record()
    target = rec.target if rec and rec.target in TARGETS else Target.LOCAL
    return TARGETS[Target(target)]


def refuse_unused(name: str, args: argparse.Namespace) -> None:
    """An option the chosen target does not use is refused, not ignored."""
    given = [o for o in OPTIONS if getattr(args, o, None) and o not in get(name).options]
    if given:
        users = {o: " or ".join(t.name for t in TARGETS.values() if o in t.options)
                 for o in given}
        used = ", ".join(f"--{o.replace('_', '-')} ({users[o]})" for o in given)
        raise UsageError(f"--target {name} does not use {used}: drop them, or pick a target "
                         "that uses them")
