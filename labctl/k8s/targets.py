"""The CLI's entry points for the docker and k8s targets and `labctl render` (loaded lazily)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from labctl import labs
from labctl.errors import UsageError
from labctl.job import JobSpec, Outcome
from labctl.k8s import manifests as m
from labctl.plan import LabPlan, plan_lab
from labctl.rundir import RunDir
from labctl.states import Target


def add_options(p: argparse.ArgumentParser) -> None:
    """Options of `run` and `render` that only the docker and k8s targets use."""
    p.add_argument("--namespace", metavar="NS",
                   help="k8s: an existing namespace to run in (default: a new one per run)")
    p.add_argument("--image", metavar="IMAGE",
                   help=f"the TensorFlow image (default k8s: {m.CPU_IMAGE} or the -gpu variant; "
                        "docker: local/tf-lab:" + m.TF_VERSION + ")")
    p.add_argument("--deadline", type=_deadline, metavar="S",
                   help="k8s: seconds the run's Jobs may live, even if labctl is gone "
                        f"(default: the lab's [k8s] deadline, else {m.DEADLINE_S})")
    p.add_argument("--kubeconfig", metavar="PATH",
                   help="k8s: kubeconfig (default $KUBECONFIG, ./kubeconfig, ~/.kube/config)")


# Which targets use each of the options above; any other target refuses them, not ignores them.
OPTION_TARGETS = {"namespace": (Target.K8S,), "image": (Target.K8S, Target.DOCKER),
                  "deadline": (Target.K8S,), "kubeconfig": (Target.K8S,)}


def refuse_unused(target: str, args: argparse.Namespace) -> None:
    given = [f"--{o}" for o, used in OPTION_TARGETS.items()
             if getattr(args, o, None) and target not in used]
    if given:
        raise UsageError(f"{', '.join(given)} apply to --target k8s (or docker for --image) "
                         "only: drop them or add --target k8s")


def _deadline(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds > 0")
    return int(text)


def run(target: str, lab: labs.Lab, plan: LabPlan, spec: JobSpec, meta: dict[str, Any],
        args: argparse.Namespace) -> tuple[RunDir, Outcome]:
    namespace = getattr(args, "namespace", None)
    image = getattr(args, "image", None)
    if target == "docker":
        from labctl import docker_target

        return docker_target.run(lab, plan, spec, meta, args.quiet, image or docker_target.IMAGE)
    from labctl.k8s import cluster

    done = cluster.run(lab, plan, spec, meta, args.quiet, namespace=namespace, image=image,
                       kubeconfig=getattr(args, "kubeconfig", None),
                       deadline_s=getattr(args, "deadline", None))
    return done.run, done.outcome


def render(args: argparse.Namespace) -> int:
    """`labctl render LAB --target k8s`: the manifests a run would create, as YAML."""
    from labctl.k8s.yamlout import dump

    if args.target != Target.K8S:
        raise UsageError("render supports --target k8s only")
    lab = labs.load_lab(labs.resolve(args.lab))
    plan = plan_lab(lab, {"worker": args.workers, "ps": args.ps},
                    {"steps": args.steps, "dataset": args.dataset}, [])
    where = dataclasses.replace(m.render_placement(lab, args.namespace, args.image),
                                deadline_s=args.deadline)
    sys.stdout.write(dump(m.render(lab, plan, where)))
    return 0


KINDS = "jobs,pods,deployments,services,configmaps,pvc"  # what a run creates in a namespace


def clean(run: RunDir) -> list[str]:
    """Remove what a docker or k8s run left outside its run dir (containers, cluster objects)."""
    target = run.read().get("target")
    if target == "docker":
        from labctl import docker_target

        return docker_target.remove(run.run_id)
    if target == "k8s":
        from labctl.k8s import cluster
        from labctl.k8s.api import ClusterError

        try:
            return cluster.clean(run, shared=True)
        except ClusterError as exc:  # e.g. the cluster was destroyed: the run dir still goes
            meta = run.read()
            print(f"labctl: warning: run {run.run_id}'s objects in namespace "
                  f"{meta.get('namespace')} were not deleted ({exc}); later: `kubectl -n "
                  f"{meta.get('namespace')} delete {KINDS} -l {m.LABEL_RUN}={run.run_id}`",
                  file=sys.stderr)
    return []


def sweep(kubeconfig: str | None) -> list[str] | None:
    """`labctl clean --all`: every object labctl made on the cluster, with or without a run
    record here (a `make clean`, a labctl killed while creating); None without a cluster."""
    from labctl.k8s import cluster
    from labctl.k8s.api import Api, kubeconfig_path

    if kubeconfig is None and kubeconfig_path() is None:
        print("labctl: no kubeconfig: no cluster to sweep")
        return None
    return cluster.sweep(Api(kubeconfig))
