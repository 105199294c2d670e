"""The local target: every task a process on this machine, talking over loopback."""

from __future__ import annotations

import argparse
import sys

from labctl.job import JobSpec, Outcome
from labctl.labs import Lab
from labctl.plan import LabPlan, args_argv
from labctl.record import RunRecord
from labctl.rundir import RunDir
from labctl.states import Target
from labctl.tasks import TaskSpec


class Local:
    name = Target.LOCAL
    options: tuple[str, ...] = ("no_preload",)

    def run(self, lab: Lab, plan: LabPlan, spec: JobSpec, record: RunRecord,
            args: argparse.Namespace) -> tuple[RunDir, Outcome]:
        from labctl.local import execute, forking

        program = [sys.executable, str(lab.path / lab.program)]

        def command(_task: TaskSpec, run: RunDir) -> list[str]:
            return [*program, "--output-dir", str(run.output), *args_argv(plan.args)]

        preloaded = lab.preload if forking(getattr(args, "no_preload", False)) else ()
        return execute(lab.name, spec, record, command, None, args.quiet, preloaded)

    def clean(self, run: RunDir) -> list[str]:
        return []  # its processes end with the run; the run directory holds the rest
