"""TF_CONFIG in the TFJob convention, for any target: the target supplies each task's address."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from labctl.tasks import SINGLE, TaskSpec

Cluster = dict[str, list[str]]
EVALUATOR = "evaluator"


def cluster_spec(tasks: Sequence[TaskSpec], address: Callable[[TaskSpec], str]) -> Cluster:
    """{"ps": ["host:port", ...], "worker": [...]} in task-index order.

    `address` maps a task to `host:port`: 127.0.0.1 ports locally, Service DNS names on
    Kubernetes. A single-process job has no cluster.
    """
    cluster: Cluster = {}
    for task in sorted(t for t in tasks if t.type != SINGLE):
        cluster.setdefault(task.type, []).append(address(task))
    return cluster


def tf_config(cluster: Cluster, task: TaskSpec) -> str:
    """The TF_CONFIG value for one task of `cluster` (compact JSON, stable key order).

    The evaluator is not part of the training cluster: only its own TF_CONFIG lists it
    (training tasks would otherwise wait for it, and ParameterServerStrategy rejects it).
    """
    if task.type not in cluster or task.index >= len(cluster[task.type]):
        raise ValueError(f"task {task.name} is not in the cluster")
    seen = {t: hosts for t, hosts in cluster.items() if t != EVALUATOR or task.type == EVALUATOR}
    return json.dumps(
        {"cluster": seen, "task": {"type": task.type, "index": task.index}},
        separators=(",", ":"),
    )
