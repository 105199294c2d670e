"""The k8s target: the lab's Jobs, Services and volume on a Kubernetes cluster."""

from __future__ import annotations

import argparse
import sys

from labctl.job import JobSpec, Outcome
from labctl.labs import Lab
from labctl.plan import LabPlan
from labctl.record import RunRecord
from labctl.rundir import RunDir
from labctl.states import Target


class Kubernetes:
    name = Target.K8S
    options = ("namespace", "image", "deadline", "kubeconfig", "cpu_request", "cpu_limit")

    def run(self, lab: Lab, plan: LabPlan, spec: JobSpec, record: RunRecord,
            args: argparse.Namespace) -> tuple[RunDir, Outcome]:
        from labctl.k8s import cluster
        from labctl.k8s.targets import cpu_option

        done = cluster.run(lab, plan, spec, record, args.quiet,
                           namespace=getattr(args, "namespace", None),
                           image=getattr(args, "image", None),
                           kubeconfig=getattr(args, "kubeconfig", None),
                           deadline_s=getattr(args, "deadline", None),
                           cpu_requests=cpu_option(getattr(args, "cpu_request", []), plan.tasks,
                                                   "--cpu-request"),
                           cpu_limits=cpu_option(getattr(args, "cpu_limit", []), plan.tasks,
                                                 "--cpu-limit"))
        return done.run, done.outcome

    def clean(self, run: RunDir) -> list[str]:
        from labctl.k8s import lifecycle
        from labctl.k8s import manifests as m
        from labctl.k8s.api import ClusterError

        try:
            return lifecycle.clean(run, shared=True)
        except ClusterError as exc:  # e.g. the cluster was destroyed: the run dir still goes
            rec = run.record()
            namespace = rec.namespace if rec else None
            kinds = ",".join(kind.lower() for kind in lifecycle.CLEAN_KINDS)
            print(f"labctl: warning: run {run.run_id}'s objects in namespace {namespace} were "
                  f"not deleted ({exc}); later: `kubectl -n {namespace} delete {kinds} "
                  f"-l {m.LABEL_RUN}={run.run_id}`",
                  file=sys.stderr)
            return []
