"""Waiting on the cluster: until pods start (image pulls are not stalls; a pod that cannot start
fails fast with its reason), until objects are ready, until deleted ones are gone."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence

from labctl.k8s import manifests as m
from labctl.k8s import status
from labctl.k8s.api import Api, ClusterError

START_TIMEOUT_S = 600.0  # first pull of the TensorFlow image on a fresh node takes minutes


UNSCHEDULABLE_S = 60.0  # how long a pod may wait for room before the run gives up


GONE_TIMEOUT_S = 300.0  # a namespace's deletion waits for its pods' graceful shutdown


# A pod waiting for these cannot start by waiting longer.
BAD_WAITING = {"InvalidImageName", "ErrImageNeverPull", "CreateContainerError",
               "CreateContainerConfigError", "RunContainerError"}


# The kubelet retries pulls with back-off: a registry rate limit or a flaky venue network
# passes. Only an image that does not exist (or is private) fails at once.
PULL_WAITING = {"ErrImagePull", "ImagePullBackOff"}


PULL_RETRY_S = 300.0


PULL_PERMANENT = ("not found", "manifest unknown", "pull access denied", "unauthorized",
                  "insufficient_scope")


PULL_FIX = ("pre-pull the lab images on every node (playbooks/images.yml) or give the cluster a "
            "registry mirror (containerd_registry_mirrors)")


def registry(image: str) -> str:
    """The registry an image reference pulls from (docker.io when the name has none)."""
    first, slash, _ = image.partition("/")
    return first if slash and ("." in first or ":" in first or first == "localhost") \
        else "docker.io"


def _unschedulable(pod: m.Manifest) -> str | None:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return str(cond.get("message") or cond.get("reason"))
    return None


def hopeless(pods: Sequence[m.Manifest], pending_since: dict[str, float],
              clock: Callable[[], float], may_pend: Collection[str] = ()) -> None:
    """Fail at once on a pod that cannot start its container or pull an image that does not
    exist; after PULL_RETRY_S on one whose pulls keep failing; after UNSCHEDULABLE_S on one
    that found no node, unless its Job is one of `may_pend`."""
    for pod in pods:
        name = pod["metadata"]["name"]
        stuck = status.waiting(pod)
        if stuck and stuck[0] in BAD_WAITING:
            raise ClusterError(f"pod {name} cannot start: {stuck[0]}: {stuck[1]}".strip())
        if stuck and stuck[0] in PULL_WAITING:
            reason, message, image = stuck
            image = image or next((c.get("image", "") for c in pod.get("spec", {}).get(
                "containers", [])), "")
            permanent = any(p in message.lower() for p in PULL_PERMANENT)
            since = pending_since.setdefault(f"pull {name}", clock())
            if permanent or clock() - since >= PULL_RETRY_S:
                how_long = "" if permanent else f" for {PULL_RETRY_S:g} s"
                raise ClusterError(f"pod {name} cannot pull image {image} from {registry(image)}"
                                   f"{how_long} ({reason}: {message}): {PULL_FIX}")
        else:
            pending_since.pop(f"pull {name}", None)
        reason = None if status.job_of(pod) in may_pend else _unschedulable(pod)
        if reason and clock() - pending_since.setdefault(name, clock()) >= UNSCHEDULABLE_S:
            raise ClusterError(f"pod {name} cannot be scheduled: {reason}")


def wait_until(pending: Callable[[], list[str]], what: str, namespace: str,
               note: Callable[[str], None], timeout_s: float, clock: Callable[[], float],
               sleep: Callable[[float], None]) -> None:
    """Poll `pending()` (the names still waiting; it raises when waiting is hopeless) until it
    is empty; say what is awaited when that changes; give up after `timeout_s`."""
    started, said = clock(), ""
    while waiting := pending():
        text = f"waiting for {what}: {', '.join(waiting)}"
        if text != said:
            note(text)
            said = text
        if clock() - started >= timeout_s:
            raise ClusterError(f"{', '.join(waiting)} not ready within {timeout_s:g} s "
                               f"(`kubectl -n {namespace} describe pods` shows why)")
        sleep(status.POLL_S)


def wait_gone(api: Api, kind: str, name: str, namespace: str | None,
              note: Callable[[str], None], timeout_s: float = GONE_TIMEOUT_S,
              clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> None:
    """Until an object being deleted (a namespace right after `labctl clean`) is gone: objects
    cannot be created in a namespace that is terminating."""
    def pending() -> list[str]:
        return [f"{kind}/{name}"] if status.deleting(api.read(kind, name, namespace)) else []

    wait_until(pending, "an earlier run's objects to finish deleting", namespace or "default",
               note, timeout_s, clock, sleep)


def _cannot_create(api: Api, namespace: str, job: str) -> None:
    """A Job whose pods admission refuses (Pod Security, a quota) has no pod to look at: the
    Job controller's FailedCreate event on the Job says why."""
    events = api.list("Event", namespace,
                      field_selector=f"involvedObject.kind=Job,involvedObject.name={job}")
    failed = [e for e in events if e.get("reason") == "FailedCreate"]
    if failed:
        raise ClusterError(f"Job {job} cannot create its pod: {failed[-1].get('message')}")


def wait_started(api: Api, namespace: str, run_sel: str, jobs: Sequence[str],
                 note: Callable[[str], None], timeout_s: float = START_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 shared_sel: str | None = None, unawaited: Collection[str] = ()) -> None:
    """Until each Job has a pod past Pending (or has finished). Pods of the lab's shared
    objects (`shared_sel`: lab 11's model server) are watched for hopeless starts too: their
    image is pulled now, and a run must not pass while the server cannot exist. The run's
    `unawaited` Jobs (not in `jobs`) may stay unscheduled."""
    pending_since: dict[str, float] = {}

    def pending() -> list[str]:
        pods = api.list("Pod", namespace, run_sel)
        shared = api.list("Pod", namespace, shared_sel) if shared_sel else []
        hopeless(pods + shared, pending_since, clock, may_pend=unawaited)
        finished = {j["metadata"]["name"] for j in api.list("Job", namespace, run_sel)
                    if status.job_result(j)}
        for job in set(jobs) - finished - {status.job_of(p) for p in pods}:
            _cannot_create(api, namespace, job)
        return [job for job in jobs if job not in finished and not any(
            p.get("status", {}).get("phase") not in (None, "Pending")
            for p in pods if status.job_of(p) == job)]

    wait_until(pending, "pods to start (pulling images on first use)", namespace, note,
               timeout_s, clock, sleep)


def wait_ready(api: Api, namespace: str, run_sel: str, docs: Sequence[m.Manifest],
               note: Callable[[str], None], timeout_s: float = START_TIMEOUT_S,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> None:
    """Until every Pod is Ready, every Deployment available and every Job complete (labs whose
    objects are the lab, like 08)."""
    wanted = [(d["kind"], d["metadata"]["name"]) for d in docs
              if d["kind"] in ("Pod", "Deployment", "Job")]
    pending_since: dict[str, float] = {}

    def pending() -> list[str]:
        hopeless(api.list("Pod", namespace, run_sel), pending_since, clock)
        return [f"{kind}/{name}" for kind, name in wanted
                if not status.ready(api.read(kind, name, namespace) or {"kind": kind, "spec": {}})]

    wait_until(pending, "the lab's objects", namespace, note, timeout_s, clock, sleep)
