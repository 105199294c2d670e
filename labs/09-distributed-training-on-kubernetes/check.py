"""Lab 09 check: lab 04's program ran as Kubernetes Jobs, a worker pod was deleted mid-training
and its replacement rejoined, the checkpoint on the shared volume holds trained weights
(evaluated here) at the last global step, and no parameter server is left running."""

from __future__ import annotations

import re
from pathlib import Path

from labkit import checks
from labkit.checks import Run, require

REPLACED = re.compile(r"^----- labctl: pod (\S+) replaces (\S+) ")
HOW = "labctl run 09 --target k8s --kill worker:1@300"


def rejoined(log: Path) -> str | None:
    """`new-pod` when the log shows a pod replacement followed by training progress."""
    replaced = None
    for line in log.read_text(errors="replace").splitlines():
        match = REPLACED.match(line)
        if match:
            replaced = match.group(1)
        elif replaced and line.startswith("PROGRESS "):
            return replaced
    return None


def live_ps(run: Run) -> list[str]:
    """Parameter-server pods of this run still running, asked of the cluster when it still has
    the run's namespace, else read from run.json."""
    from labctl.k8s import manifests as m
    from labctl.k8s.api import Api, ClusterError

    namespace, run_id = run.meta.get("namespace"), run.meta.get("run_id")
    try:
        api = Api(run.meta.get("kubeconfig") or None)
        if api.read("Namespace", namespace) is not None:
            pods = api.list("Pod", namespace, f"{m.LABEL_RUN}={run_id},"
                            "app.kubernetes.io/component=ps")
            return [p["metadata"]["name"] for p in pods
                    if p.get("status", {}).get("phase") in ("Pending", "Running")]
    except ClusterError:
        pass  # the cluster is gone: the run's record is what is left
    return [t["name"] for t in run.meta.get("tasks", [])
            if t.get("type") == "ps" and t.get("status") not in ("succeeded", "stopped")]


def check(run: Run) -> str:
    meta = run.meta
    require(meta.get("target") == "k8s", f"this run used the {meta.get('target')} target",
            f"run it on the cluster: `{HOW}`")
    ckpt = run.checkpoint("checkpoints")  # on the shared volume, copied back by labctl
    accuracy = checks.check_accuracy(run, ckpt)
    steps = checks.check_steps(run, ckpt)
    back = {log.stem: pod for log in sorted((run.path / "logs").glob("worker-*.log"))
            if (pod := rejoined(log))}
    require(back, "no worker pod was replaced during training",
            f"delete a worker pod while it trains (`{HOW}`, or `kubectl -n NAMESPACE delete pod "
            "-l labctl/task=worker-1` by hand) and watch the Job replace it")
    left = live_ps(run)
    require(not left, f"parameter server(s) still running: {', '.join(left)}",
            "the ps ends on its done-queue once every worker finished; delete it with "
            "`kubectl delete job -l app.kubernetes.io/component=ps`")
    task, pod = next(iter(back.items()))
    return (f"Kubernetes Jobs succeeded; {accuracy}; global step {steps} in the checkpoint on "
            f"the volume; {task} was replaced by pod {pod}, which rejoined training; no ps left "
            "running")


if __name__ == "__main__":
    checks.main(check, "read `labctl logs 09` and `kubectl -n NAMESPACE get pods,jobs`")
