"""The CLI's k8s-side commands: the docker/k8s run options, `labctl render`, `clean --all`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from labctl import labs, rundir
from labctl.errors import UsageError
from labctl.k8s import manifests as m
from labctl.k8s.render import render
from labctl.plan import arg_overrides, plan_lab
from labctl.states import Target
from labctl.tasks import TaskSpec, find_task


def add_options(p: argparse.ArgumentParser) -> None:
    """Options of `run` and `render` that only the docker and k8s targets use."""
    p.add_argument("--namespace", metavar="NS",
                   help="k8s: an existing namespace to run in (default: a new one per run)")
    p.add_argument("--image", metavar="IMAGE",
                   help="the TensorFlow image (default k8s: tensorflow/tensorflow:V or its -gpu "
                        "variant; docker: local/tf-lab:V; V is versions.yml's tensorflow_version)")
    p.add_argument("--deadline", type=_deadline, metavar="S",
                   help="k8s: seconds the run's Jobs may live, even if labctl is gone "
                        f"(default: the lab's [k8s] deadline, else {m.DEADLINE_S})")
    p.add_argument("--kubeconfig", metavar="PATH",
                   help="k8s: kubeconfig (default $KUBECONFIG, ./kubeconfig, ~/.kube/config)")
    p.add_argument("--cpu-request", action="append", default=[], metavar="TASK=CPU",
                   help="k8s: one task's CPU request, e.g. worker:2=64; the run does not wait "
                        f"for that task to be scheduled (default {m.REQUESTS['cpu']}); repeatable")
    p.add_argument("--cpu-limit", action="append", default=[], metavar="TASK=CPU",
                   help="k8s: one task's CPU limit, e.g. worker:1=100m, enforced by the kernel's "
                        f"CFS quota (default {m.LIMITS['cpu']}); repeatable")


def cpu_option(texts: Sequence[str], tasks: Sequence[TaskSpec], flag: str) -> dict[str, str]:
    """`--cpu-limit worker:1=100m` (repeatable) -> {"worker:1": "100m"}: a task of this run
    each, once."""
    out: dict[str, str] = {}
    for text in texts:
        name, sep, quantity = (part.strip() for part in text.partition("="))
        if not sep:
            raise UsageError(f"bad {flag} {text!r}: expected TASK=CPU, e.g. worker:1=100m")
        task = find_task(tasks, name)
        if task.name in out:
            raise UsageError(f"{flag} names {task.name} twice")
        try:
            m.millicores(quantity)
        except m.RenderError as exc:
            raise UsageError(f"bad {flag} {text!r}: {exc}") from None
        out[task.name] = quantity
    return out


def _deadline(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds > 0")
    return int(text)


def cmd_render(args: argparse.Namespace) -> int:
    """`labctl render LAB --target k8s`: the manifests a run would create, as YAML."""
    from labctl.k8s.yamlout import dump

    if args.target != Target.K8S:
        raise UsageError("render supports --target k8s only")
    lab = labs.load_lab(labs.resolve(args.lab))
    plan = plan_lab(lab, {"worker": args.workers, "ps": args.ps},
                    arg_overrides(lab, args.steps, args.dataset, args.set), [])
    where = dataclasses.replace(
        m.render_placement(lab, args.namespace, args.image), deadline_s=args.deadline,
        cpu_requests=cpu_option(args.cpu_request, plan.tasks, "--cpu-request"),
        cpu_limits=cpu_option(args.cpu_limit, plan.tasks, "--cpu-limit"))
    sys.stdout.write(dump(render(lab, plan, where)))
    return 0


def sweep(kubeconfig: str | None) -> list[str] | None:
    """`labctl clean --all`: every object labctl made on the cluster, with or without a run
    record here (a `make clean`, a labctl killed while creating); None without a cluster."""
    from labctl.k8s import lifecycle
    from labctl.k8s.api import Api, kubeconfig_path

    if kubeconfig is None and kubeconfig_path() is None:
        print("labctl: no kubeconfig: no cluster to sweep")
        return None
    return lifecycle.sweep(Api(kubeconfig))


def record_verdict(lab: str, run: rundir.RunDir, word: str) -> None:
    """A cluster run's verdict goes to its namespace too, where a classroom's instructor sees it
    (`labctl class status`). Best effort: the check's verdict stands without it."""
    from labctl.k8s.api import Api, ClusterError
    from labctl.k8s.roster import record_verdict as keep

    rec = run.record()
    if rec is None or rec.target != Target.K8S or not rec.namespace:
        return
    try:
        keep(Api(rec.kubeconfig or None), rec.namespace, lab, str(word), run.run_id)
    except ClusterError as exc:
        print(f"labctl: the verdict stays here only: {exc}", file=sys.stderr)
