"""The docker target: the lab's rendered pods as containers on one Docker network."""

from __future__ import annotations

import argparse

from labctl.job import JobSpec, Outcome
from labctl.labs import Lab
from labctl.plan import LabPlan
from labctl.record import RunRecord
from labctl.rundir import RunDir
from labctl.states import Target


class Docker:
    name = Target.DOCKER
    options = ("image",)

    def run(self, lab: Lab, plan: LabPlan, spec: JobSpec, record: RunRecord,
            args: argparse.Namespace) -> tuple[RunDir, Outcome]:
        from labctl import docker_target

        return docker_target.run(lab, plan, spec, record, args.quiet,
                                 getattr(args, "image", None))

    def clean(self, run: RunDir) -> list[str]:
        from labctl import docker_target

        return docker_target.remove(run.run_id)
