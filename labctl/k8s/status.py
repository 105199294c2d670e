"""What a Kubernetes object's status says, read from the dicts the API returns; and how often
labctl reads it."""

from __future__ import annotations

from typing import Any

from labctl.k8s import manifests as m
from labctl.k8s.api import ClusterError

POLL_S = 1.0  # seconds between two reads of the cluster's state while waiting or following


def deleting(obj: m.Manifest | None) -> bool:
    return bool(obj and (obj.get("metadata", {}).get("deletionTimestamp")
                         or obj.get("status", {}).get("phase") == "Terminating"))


def exit_code(pod: m.Manifest) -> int | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return int(terminated.get("exitCode", 1))
    return None


def job_result(job: m.Manifest) -> dict[str, Any] | None:
    """The Job's Complete or Failed condition once it has one."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return dict(cond)
    return None


def live(pod: m.Manifest) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and \
        pod.get("status", {}).get("phase") in (None, "Pending", "Running")


def started(pod: m.Manifest) -> bool:
    return pod.get("status", {}).get("phase") in ("Running", "Succeeded", "Failed")


def job_of(pod: m.Manifest) -> str | None:
    labels = pod["metadata"].get("labels") or {}
    return labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")


def waiting(pod: m.Manifest) -> tuple[str, str, str] | None:
    """(reason, message, image) of the pod's first container that waits for a reason."""
    for status in pod.get("status", {}).get("containerStatuses") or []:
        state = (status.get("state") or {}).get("waiting") or {}
        if state.get("reason"):
            return state["reason"], " ".join(str(state.get("message", "")).split()), \
                str(status.get("image") or "")
    return None


def ready(obj: m.Manifest) -> bool:
    status = obj.get("status") or {}
    if obj["kind"] == "Pod":
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in status.get("conditions") or [])
    if obj["kind"] == "Deployment":
        return (status.get("availableReplicas") or 0) >= obj["spec"].get("replicas", 1) and \
            (status.get("observedGeneration") or 0) >= obj["metadata"].get("generation", 1)
    result = job_result(obj)
    if result and result["type"] == "Failed":
        raise ClusterError(f"Job {obj['metadata']['name']} failed: {result.get('reason')}: "
                           f"{result.get('message', '')}")
    return result is not None
