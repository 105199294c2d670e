"""`labctl run LAB --target k8s`: the rendered manifests on a real cluster, supervised by
labctl's Job controller like local processes.

1. preflight, creating nothing: API reachable, StorageClass, GPU capacity, namespace, name clashes;
2. create every object in order; any refusal rolls back what this run created;
3. wait until every task's pod runs (image pulls are not stalls; unschedulable or unpullable
   pods fail fast with their events);
4. the controller streams pod logs (same prefixes, progress bar, watchdog); a task "exits" when
   its Job completes or fails (the Job itself retries pods: backoffLimit, podFailurePolicy);
   `--kill TASK@STEP` deletes the task's pod, and the Job replaces it;
5. once the success task's Job completes, parameter servers (and, for launcher-shutdown labs,
   workers) are deleted; results are copied from the PVC into the local run dir by a short-lived
   pod, so `labctl check` reads them as for local runs.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import tarfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from labctl import rundir
from labctl.job import JobSpec, Lines, Outcome
from labctl.k8s import manifests as m
from labctl.k8s.api import Api, ClusterError, Forbidden
from labctl.labs import Lab
from labctl.plan import LabPlan
from labctl.record import RunRecord
from labctl.restart import RestartPolicy
from labctl.rundir import RunDir
from labctl.states import RunStatus, Target
from labctl.supervise import execute
from labctl.tasks import TaskSpec

POLL_S = 1.0
LOST_AFTER = 15  # failed polls in a row: the API server is gone, the run cannot be followed
START_TIMEOUT_S = 600.0  # first pull of the TensorFlow image on a fresh node takes minutes
UNSCHEDULABLE_S = 60.0  # how long a pod may wait for room before the run gives up
COLLECT_TIMEOUT_S = 180.0
GONE_TIMEOUT_S = 300.0  # a namespace's deletion waits for its pods' graceful shutdown
COLLECT_MAX_FILE = 2 * 1024 * 1024  # files larger than this stay on the volume
STOPPED = -15  # a Job that labctl deleted (as a SIGTERM'd local task)
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


class Skipped(Exception):
    """The cluster cannot run this lab at all (lab 10 without GPUs): not a failure."""


def selector(run_id: str, lab: Lab) -> str:
    return f"{m.LABEL_RUN}={run_id},{m.LABEL_LAB}={lab.name}"


# --- 1. preflight ------------------------------------------------------------------------------
def gpu_capacity(api: Api) -> int:
    try:
        nodes = api.list("Node")
    except Forbidden:
        return -1  # cannot tell: let the scheduler decide
    return sum(int(n.get("status", {}).get("allocatable", {}).get(m.GPU_RESOURCE, 0))
               for n in nodes)


def _deleting(obj: m.Manifest | None) -> bool:
    return bool(obj and (obj.get("metadata", {}).get("deletionTimestamp")
                         or obj.get("status", {}).get("phase") == "Terminating"))


def wait_gone(api: Api, kind: str, name: str, namespace: str | None,
              note: Callable[[str], None], timeout_s: float = GONE_TIMEOUT_S,
              clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> None:
    """Until an object being deleted (a namespace right after `labctl clean`) is gone: objects
    cannot be created in a namespace that is terminating."""
    def pending() -> list[str]:
        return [f"{kind}/{name}"] if _deleting(api.read(kind, name, namespace)) else []

    wait_until(pending, "an earlier run's objects to finish deleting", namespace or "default",
               note, timeout_s, clock, sleep)


def preflight(api: Api, lab: Lab, docs: Sequence[m.Manifest], where: m.Placement,
              note: Callable[[str], None] = lambda _: None) -> list[m.Manifest]:
    """Check everything before creating anything; the docs still to create (shared objects that
    a previous run of the lab made are reused; ones still being deleted are waited for)."""
    kinds = {d["kind"] for d in docs}
    if "PersistentVolumeClaim" in kinds:
        try:
            found = api.read("StorageClass", m.STORAGE_CLASS)
        except Forbidden:
            found = {}  # an attendee may not read cluster-scoped objects; the PVC will tell
        if found is None:
            raise ClusterError(f"the cluster has no StorageClass {m.STORAGE_CLASS}: provision "
                               "it with playbooks/storage.yml (nfs_server, nfs_provisioner)")
    if m.settings(lab).gpu:
        capacity = gpu_capacity(api)
        if capacity == 0:
            raise Skipped(f"no node offers {m.GPU_RESOURCE} (no GPU, or the NVIDIA device plugin "
                          "is not running): lab skipped; GPU nodes are opt-in (gpu_nodes group)")
        try:
            runtime = api.read("RuntimeClass", m.RUNTIME_CLASS)
        except Forbidden:
            runtime = {}
        if runtime is None:
            raise ClusterError(f"no RuntimeClass {m.RUNTIME_CLASS}: provision the GPU nodes "
                               "with playbooks/gpu.yml (nvidia_gpu role)")
    if not where.create_namespace:
        space = api.read("Namespace", where.namespace)
        if space is None or _deleting(space):
            state = "is being deleted" if space else "does not exist"
            raise ClusterError(f"namespace {where.namespace} {state}: create it (`kubectl "
                               f"create namespace {where.namespace}`) or drop --namespace")
    todo = []
    for doc in docs:
        meta = doc["metadata"]
        existing = api.read(doc["kind"], meta["name"], meta.get("namespace"))
        if _deleting(existing):
            wait_gone(api, doc["kind"], meta["name"], meta.get("namespace"), note)
            existing = api.read(doc["kind"], meta["name"], meta.get("namespace"))
        if existing is None:
            todo.append(doc)
            continue
        labels = existing.get("metadata", {}).get("labels") or {}
        if meta["labels"].get(m.LABEL_SHARED) == "true" and labels.get(m.LABEL_SHARED) == "true" \
                and labels.get(m.LABEL_LAB) == lab.name:
            continue  # made by an earlier run of this lab for its next runs
        owner, owner_lab = labels.get(m.LABEL_RUN), labels.get(m.LABEL_LAB)
        where_text = f" in namespace {meta['namespace']}" if meta.get("namespace") else ""
        fix = (f"(made by {owner_lab} run {owner}): `labctl clean {owner_lab[:2]}`"
               if owner and owner_lab else "(not made by labctl): delete it")
        raise ClusterError(f"name clash: {doc['kind']} {meta['name']} already exists"
                           f"{where_text} {fix}, or use another --namespace")
    return todo


# --- 2. create, or roll back -------------------------------------------------------------------
def create_all(api: Api, docs: Sequence[m.Manifest]) -> list[m.Manifest]:
    """Create in order; on any error delete what was created, newest first, and re-raise."""
    created: list[m.Manifest] = []
    try:
        for doc in docs:
            api.create(doc)
            created.append(doc)
    except BaseException:
        rollback(api, created)
        raise
    return created


def rollback(api: Api, created: Sequence[m.Manifest]) -> None:
    for doc in reversed(created):
        meta = doc["metadata"]
        # Best effort: the error that caused the rollback is the one to report.
        with contextlib.suppress(ClusterError):
            api.delete(doc["kind"], meta["name"], meta.get("namespace"))


# --- 3. wait for the pods ----------------------------------------------------------------------
def waiting(pod: m.Manifest) -> tuple[str, str, str] | None:
    """(reason, message, image) of the pod's first container that waits for a reason."""
    for status in pod.get("status", {}).get("containerStatuses") or []:
        state = (status.get("state") or {}).get("waiting") or {}
        if state.get("reason"):
            return state["reason"], " ".join(str(state.get("message", "")).split()), \
                str(status.get("image") or "")
    return None


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


def _hopeless(pods: Sequence[m.Manifest], pending_since: dict[str, float],
              clock: Callable[[], float]) -> None:
    """Fail at once on a pod that cannot start its container or pull an image that does not
    exist; after PULL_RETRY_S on one whose pulls keep failing; after UNSCHEDULABLE_S on one
    that found no node."""
    for pod in pods:
        name = pod["metadata"]["name"]
        stuck = waiting(pod)
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
        reason = _unschedulable(pod)
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
        sleep(POLL_S)


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
                 shared_sel: str | None = None) -> None:
    """Until each Job has a pod past Pending (or has finished). Pods of the lab's shared
    objects (`shared_sel`: lab 11's model server) are watched for hopeless starts too: their
    image is pulled now, and a run must not pass while the server cannot exist."""
    pending_since: dict[str, float] = {}

    def pending() -> list[str]:
        pods = api.list("Pod", namespace, run_sel)
        shared = api.list("Pod", namespace, shared_sel) if shared_sel else []
        _hopeless(pods + shared, pending_since, clock)
        finished = {j["metadata"]["name"] for j in api.list("Job", namespace, run_sel)
                    if _job_result(j)}
        for job in set(jobs) - finished - {_job_of(p) for p in pods}:
            _cannot_create(api, namespace, job)
        return [job for job in jobs if job not in finished and not any(
            p.get("status", {}).get("phase") not in (None, "Pending")
            for p in pods if _job_of(p) == job)]

    wait_until(pending, "pods to start (pulling images on first use)", namespace, note,
               timeout_s, clock, sleep)


# --- 4. the backend: a task is a Job, its output the logs of the Job's pods ---------------------
def _exit_code(pod: m.Manifest) -> int | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return int(terminated.get("exitCode", 1))
    return None


def _job_result(job: m.Manifest) -> dict[str, Any] | None:
    """The Job's Complete or Failed condition once it has one."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return dict(cond)
    return None


def _live(pod: m.Manifest) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and \
        pod.get("status", {}).get("phase") in (None, "Pending", "Running")


def _started(pod: m.Manifest) -> bool:
    return pod.get("status", {}).get("phase") in ("Running", "Succeeded", "Failed")


def _job_of(pod: m.Manifest) -> str | None:
    labels = pod["metadata"].get("labels") or {}
    return labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")


class Watcher:
    """One thread polls the run's Jobs and pods and hands each task's share to its handle."""

    def __init__(self, api: Api, namespace: str, run_sel: str) -> None:
        self.api, self.namespace, self.run_sel = api, namespace, run_sel
        self.handles: dict[str, JobHandle] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def refresh(self) -> None:
        jobs = {j["metadata"]["name"]: j for j in self.api.list("Job", self.namespace,
                                                                 self.run_sel)}
        pods: dict[str, list[m.Manifest]] = {}
        for pod in self.api.list("Pod", self.namespace, self.run_sel):
            job = _job_of(pod)
            if job:
                pods.setdefault(job, []).append(pod)
        for name, handle in list(self.handles.items()):
            handle.update(jobs.get(name), pods.get(name, []))

    def _loop(self) -> None:
        failures = 0
        while not self.stopped.wait(POLL_S):
            try:
                self.refresh()
                failures = 0
            except ClusterError as exc:
                failures += 1
                if failures >= LOST_AFTER:
                    for handle in list(self.handles.values()):
                        handle.lost(str(exc))


class JobHandle:
    """The Controller's view of one task: running while its Job is active."""

    def __init__(self, api: Api, namespace: str, job: str, task: TaskSpec, lines: Lines) -> None:
        self.api, self.namespace, self.job, self.task, self.lines = (
            api, namespace, job, task, lines)
        self.lock = threading.Lock()
        self.followed: dict[str, threading.Thread] = {}  # pod name -> its log follower
        self.pods: list[m.Manifest] = []  # the Job's pods now
        self.history: dict[str, dict[str, Any]] = {}  # every pod it ever had, last seen state
        self.state: m.Manifest | None = None
        self.seen = False  # the Job was listed at least once
        self.deleted = False
        self.gone = False  # the API server was lost: nothing more is followed
        self.code: int | None = None

    def _marker(self, text: str) -> None:
        self.lines.put((self.task, f"----- labctl: {text} -----"))

    def _follow(self, pod: str) -> None:
        for line in self.api.log_lines(pod, self.namespace, m.CONTAINER):
            self.lines.put((self.task, line))

    def update(self, job: m.Manifest | None, pods: list[m.Manifest]) -> None:
        with self.lock:
            if self.gone:
                return
            self.state = job
            self.seen = self.seen or job is not None
            # Oldest first. Timestamps have whole seconds: of two pods made in the same second,
            # the one still live (not terminal, not being deleted) is the newer.
            pods = sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "",
                                               _live(p)))
            self.pods = pods
            for pod in pods:
                name = pod["metadata"]["name"]
                self.history[name] = {
                    "name": name, "phase": pod.get("status", {}).get("phase"),
                    "exit_code": _exit_code(pod), "node": pod.get("spec", {}).get("nodeName")}
                if name in self.followed or not _started(pod):
                    continue
                if self.followed:
                    previous = list(self.followed)[-1]
                    self._marker(f"pod {name} replaces {previous} (the Job restarted "
                                 f"{self.task.name})")
                thread = threading.Thread(target=self._follow, args=(name,), daemon=True)
                self.followed[name] = thread
                thread.start()
            if self.code is None:
                self.code = self._finished_code()

    def lost(self, reason: str) -> None:
        """The cluster stopped answering: the task counts as failed, with the reason logged."""
        with self.lock:
            if self.code is None:
                self._marker(f"lost the Kubernetes API: {reason}")
                self.code = 1
                self.gone = True
                self.followed.clear()  # their streams hang with the API server: stop waiting

    def _finished_code(self) -> int | None:
        if self.state is None:
            return STOPPED if self.deleted or self.seen else None
        result = _job_result(self.state)
        if result is None:
            return None
        if result["type"] == "Complete":
            return 0
        if result["type"] == "Failed":
            failed = result
            hint = " (raise it with --deadline S)" if failed.get("reason") == \
                "DeadlineExceeded" else ""
            self._marker(f"Job {self.job} failed: {failed.get('reason')}: "
                         f"{failed.get('message', '')}".rstrip(": ") + hint)
            codes = [c for c in (_exit_code(p) for p in self.pods) if c is not None]
            if failed.get("reason") == "PodFailurePolicy":
                return 2
            return codes[-1] if codes and codes[-1] != 0 else 1
        return None

    def poll(self) -> int | None:
        with self.lock:
            if self.code is None:
                return None
            if any(t.is_alive() for t in self.followed.values()):
                return None  # the last lines are still coming
            return self.code

    def current_pod(self) -> str | None:
        with self.lock:
            live = [p for p in self.pods if _live(p)]
            return live[-1]["metadata"]["name"] if live else None

    def kill(self) -> None:
        """Fault injection: evict the pod; the Job replaces it. An evicted pod carries the
        DisruptionTarget condition, which the Job's podFailurePolicy ignores, so the kill does
        not use up backoffLimit (a plain DELETE would)."""
        pod = self.current_pod()
        if pod:
            self.api.evict(pod, self.namespace, grace_s=0)

    def terminate(self) -> None:
        with self.lock:
            self.deleted = True
        self.api.delete("Job", self.job, self.namespace)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {"job": self.job, "pods": list(self.history.values())}


class KubeBackend:
    def __init__(self, api: Api, namespace: str, run_sel: str, jobs: dict[TaskSpec, str]) -> None:
        self.api, self.namespace, self.jobs = api, namespace, jobs
        self.watcher = Watcher(api, namespace, run_sel)

    def start(self, task: TaskSpec, lines: Lines) -> JobHandle:
        handle = JobHandle(self.api, self.namespace, self.jobs[task], task, lines)
        self.watcher.handles[handle.job] = handle
        if not self.watcher.thread.is_alive():
            self.watcher.thread.start()
        return handle

    def stop_all(self, handles: list[JobHandle], grace_s: float) -> None:
        """Delete the Jobs still running (failure, Ctrl-C); finished ones stay for inspection
        until `labctl clean`."""
        for handle in handles:
            if handle.poll() is None:
                with contextlib.suppress(ClusterError):
                    handle.terminate()
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(h.poll() is None for h in handles):
            try:
                self.watcher.refresh()
            except ClusterError:
                break
            time.sleep(0.2)
        self.watcher.stopped.set()

    def summary(self) -> dict[str, Any]:
        return {h.task.name: h.summary() for h in self.watcher.handles.values()}


# --- 5. results back from the volume -----------------------------------------------------------
COLLECT_SCRIPT = """
import base64, io, os, sys, tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    for root, _, files in os.walk({root!r}):
        for name in files:
            path = os.path.join(root, name)
            if os.path.getsize(path) <= {limit}:
                tar.add(path, arcname=os.path.relpath(path, {root!r}))
sys.stdout.write(base64.b64encode(buf.getvalue()).decode())
"""


def collector_pod(lab: Lab, where: m.Placement, names: m.Names, image: str,
                  node: str | None = None) -> m.Manifest:
    """A pod that prints the volume's files (as a base64 tar) for labctl to unpack locally. It
    runs on `node`, the one that just ran the lab's image (so nothing is pulled: the -gpu image
    is several GB), through the scheduler (matchFields on metadata.name, as DaemonSets do)."""
    spec: m.Manifest = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": m.pod_security(),
        "containers": [{
            "name": m.CONTAINER,
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["python3", "-c", COLLECT_SCRIPT.format(
                root=m.OUTPUT_MOUNT, limit=COLLECT_MAX_FILE)],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                          "limits": {"cpu": "1", "memory": "512Mi"}},
            "securityContext": m.container_security(),
            "volumeMounts": [{"name": "output", "mountPath": m.OUTPUT_MOUNT,
                              "readOnly": True}],
        }],
        "volumes": [{"name": "output", "persistentVolumeClaim": {
            "claimName": names.volume, "readOnly": True}}],
    }
    if node:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{names.base}-collect", "namespace": where.namespace,
                     "labels": m.labels(lab, where, "collector")},
        "spec": spec,
    }


def unpack(encoded: str, into: Path) -> list[str]:
    """The collector's output into `into`; a garbled or cut-off copy is a ClusterError."""
    import binascii
    import zlib

    try:
        data = base64.b64decode(encoded.strip(), validate=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = [t for t in tar.getmembers() if t.isfile()]
            tar.extractall(into, members=members, filter="data")
    except (binascii.Error, tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ClusterError(f"the collector's output is not a complete archive "
                           f"({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    return [t.name for t in members]


def collect(api: Api, pod: m.Manifest, into: Path, clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Run the collector pod and unpack its output; ClusterError says why a copy failed."""
    name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
    api.delete("Pod", name, ns, grace_s=0)  # left by an interrupted earlier copy
    api.create(pod)
    pending_since: dict[str, float] = {}
    try:
        started = clock()
        while True:
            current = api.read("Pod", name, ns) or {}
            phase = current.get("status", {}).get("phase")
            if phase == "Succeeded":
                return unpack(api.log(name, ns, m.CONTAINER), into)
            if phase == "Failed":
                raise ClusterError(f"pod {name} failed: "
                                   f"{api.log(name, ns, m.CONTAINER)[-200:].strip()}")
            if current:
                _hopeless([current], pending_since, clock)
            if clock() - started > COLLECT_TIMEOUT_S:
                raise ClusterError(f"pod {name} did not finish within {COLLECT_TIMEOUT_S:g} s "
                                   f"(phase {phase})")
            sleep(POLL_S)
    finally:
        with contextlib.suppress(ClusterError):
            api.delete("Pod", name, ns, grace_s=0)


def copy_command(pod: m.Manifest, manifest: Path, into: Path) -> str:
    """The kubectl commands that do what `collect` does, for when it could not."""
    name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
    return (f"kubectl -n {ns} create -f {manifest} && kubectl -n {ns} wait --for="
            f"jsonpath='{{.status.phase}}'=Succeeded pod/{name} --timeout=10m && kubectl -n {ns} "
            f"logs {name} | base64 -d | tar -xzf - -C {into} && kubectl -n {ns} delete pod {name}")


def collect_results(api: Api, run_dir: RunDir, pod: m.Manifest) -> dict[str, Any]:
    """Copy the results into the run dir; a failed copy is reported, not a failed run (the
    training verdict is already written). What happened, for the run record."""
    try:
        copied = collect(api, pod, run_dir.output)
    except ClusterError as exc:
        manifest = run_dir.path / "collect.yaml"
        from labctl.k8s.yamlout import dump

        manifest.write_text(dump([pod]))
        command = copy_command(pod, manifest, run_dir.output)
        print(f"labctl: warning: the run succeeded but its results were not copied from the "
              f"volume ({exc}); they stay on the cluster until `labctl clean`; copy them with: "
              f"{command}", flush=True)
        return {"copied": False, "reason": str(exc), "command": command}
    print(f"labctl: copied {len(copied)} file(s) from the volume into {run_dir.output}",
          flush=True)
    return {"copied": True, "files": len(copied)}


# --- the whole run -----------------------------------------------------------------------------
def note(text: str) -> None:
    print(f"labctl: {text}", flush=True)


def events_of(api: Api, namespace: str, pod: str) -> list[str]:
    try:
        events = api.list("Event", namespace, field_selector=f"involvedObject.name={pod}")
    except ClusterError:
        return []
    return [f"{e.get('type')} {e.get('reason')}: {e.get('message')}" for e in events][-10:]


@dataclasses.dataclass
class K8sRun:
    run: RunDir
    outcome: Outcome
    skipped: str | None = None


def run(lab: Lab, plan: LabPlan, spec: JobSpec, record: RunRecord, quiet: bool,
        namespace: str | None = None, image: str | None = None, kubeconfig: str | None = None,
        api_factory: Callable[[], Api] | None = None, deadline_s: int | None = None) -> K8sRun:
    """Preflight, create, supervise, shut down, collect. ClusterError: nothing left behind."""
    api = (api_factory or (lambda: Api(kubeconfig)))()
    api.version()  # unreachable cluster: fail before a run dir exists
    run_dir = rundir.create(lab.name)
    record = record.update(target=Target.K8S, run_id=run_dir.run_id)
    try:
        return _run(api, run_dir, lab, plan, spec, record, quiet, namespace, image, deadline_s)
    except (ClusterError, Skipped) as exc:
        status = RunStatus.SKIPPED if isinstance(exc, Skipped) else RunStatus.FAILED
        # Nothing stays on the cluster after these (rolled back), so none of it is recorded.
        run_dir.save(record.update(status=status, reason=str(exc),
                                   finished=rundir.iso(time.time())))
        if isinstance(exc, Skipped):
            return K8sRun(run_dir, Outcome(RunStatus.SKIPPED, str(exc), None, [], 0, 0.0), str(exc))
        raise


def _run(api: Api, run_dir: RunDir, lab: Lab, plan: LabPlan, spec: JobSpec,
         record: RunRecord, quiet: bool, namespace: str | None, image: str | None,
         deadline_s: int | None) -> K8sRun:
    where = m.Placement(
        namespace=namespace or m.run_namespace(lab, run_dir.run_id),
        run_id=run_dir.run_id,
        create_namespace=namespace is None,
        image=image,
        backoff_limit=spec.policy.max_restarts,
        deadline_s=deadline_s,
    )
    docs = m.render(lab, plan, where)
    names = m.Names(lab, plan, where)
    todo = preflight(api, lab, docs, where, note)
    created = create_all(api, todo)
    record = record.update(
        api_server=api.host, kubeconfig=str(getattr(api, "kubeconfig", "") or ""),
        namespace=where.namespace,
        namespace_created=any(d["kind"] == "Namespace" for d in created),
        created=[f"{d['kind']}/{d['metadata']['name']}" for d in created],
        cluster=m.cluster(lab, plan, where))
    run_dir.save(record.update(status="starting"))
    run_sel = selector(run_dir.run_id, lab)
    note(f"namespace {where.namespace} (`kubectl -n {where.namespace} get pods`)")
    jobs = {t: names.task(t) for t in plan.tasks} if m.settings(lab).jobs else {}
    if not jobs:  # lab 08: its objects are the lab; the attendee goes on with kubectl
        try:
            wait_ready(api, where.namespace, run_sel, docs, note)
        except BaseException:
            rollback(api, created)
            raise
        note(f"ready in namespace {where.namespace}: "
             + ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs
                         if d["kind"] in ("Pod", "Deployment", "Service", "Job")))
        run_dir.save(record.update(status=RunStatus.SUCCEEDED,
                                   finished=rundir.iso(time.time())))
        return K8sRun(run_dir, Outcome(RunStatus.SUCCEEDED, "", None, [], 0, 0.0))
    try:
        wait_started(api, where.namespace, run_sel, list(jobs.values()), note,
                     shared_sel=f"{m.LABEL_SHARED}=true,{m.LABEL_LAB}={lab.name}")
    except BaseException:
        rollback(api, created)  # pods that cannot start: the error says why, nothing stays
        raise
    # The Job retries pods itself (backoffLimit); the controller must not start a task twice.
    k8s_spec = dataclasses.replace(spec, policy=RestartPolicy(max_restarts=0))
    backend = KubeBackend(api, where.namespace, run_sel, jobs)
    outcome = execute(run_dir, k8s_spec, record, backend, quiet,
                      extra=lambda: {"pods": backend.summary()})
    if outcome.status == RunStatus.SUCCEEDED:
        ran = backend.summary().get(spec.success.name, {}).get("pods") or [{}]
        pod = collector_pod(lab, where, names, m.image(lab, where), ran[-1].get("node"))
        collected = collect_results(api, run_dir, pod)
        run_dir.save((run_dir.record() or record).update(collect=collected))
    elif outcome.failed_task:
        summary = backend.summary().get(outcome.failed_task, {})
        pods = summary.get("pods", [])
        if pods:
            events = events_of(api, where.namespace, pods[-1]["name"])
            run_dir.save((run_dir.record() or record).update(events=events))
            for line in events:
                print(f"labctl: event of pod {pods[-1]['name']}: {line}")
    return K8sRun(run_dir, outcome)


def _ready(obj: m.Manifest) -> bool:
    status = obj.get("status") or {}
    if obj["kind"] == "Pod":
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in status.get("conditions") or [])
    if obj["kind"] == "Deployment":
        return (status.get("availableReplicas") or 0) >= obj["spec"].get("replicas", 1) and \
            (status.get("observedGeneration") or 0) >= obj["metadata"].get("generation", 1)
    result = _job_result(obj)
    if result and result["type"] == "Failed":
        raise ClusterError(f"Job {obj['metadata']['name']} failed: {result.get('reason')}: "
                           f"{result.get('message', '')}")
    return result is not None


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
        _hopeless(api.list("Pod", namespace, run_sel), pending_since, clock)
        return [f"{kind}/{name}" for kind, name in wanted
                if not _ready(api.read(kind, name, namespace) or {"kind": kind, "spec": {}})]

    wait_until(pending, "the lab's objects", namespace, note, timeout_s, clock, sleep)


# --- clean -------------------------------------------------------------------------------------
CLEAN_KINDS = ("Job", "Pod", "Deployment", "Service", "ConfigMap", "PersistentVolumeClaim")
MANAGED_BY = "app.kubernetes.io/managed-by"  # every object labctl makes carries it


def clean(run_dir: RunDir, api: Api | None = None, shared: bool = False) -> list[str]:
    """Delete what a run made (by its labels, nothing else); with `shared`, also the objects it
    left for the lab's next runs. The names of what was deleted."""
    rec = run_dir.record()
    if rec is None or not rec.namespace or not rec.run_id:
        return []
    namespace, run_id, lab = rec.namespace, rec.run_id, rec.lab
    api = api or Api(rec.kubeconfig or None)
    deleted = []
    selectors = [f"{m.LABEL_RUN}={run_id},{m.LABEL_LAB}={lab}"]
    if shared:
        selectors.append(f"{m.LABEL_SHARED}=true,{m.LABEL_LAB}={lab}")
    if api.read("Namespace", namespace) is None:
        return []
    for sel in selectors:
        for kind in CLEAN_KINDS:
            for obj in api.list(kind, namespace, sel):
                if api.delete(kind, obj["metadata"]["name"], namespace):
                    deleted.append(f"{kind}/{obj['metadata']['name']}")
    ns = api.read("Namespace", namespace) or {}
    labels = ns.get("metadata", {}).get("labels") or {}
    owned = labels.get(m.LABEL_RUN) == run_id or (
        shared and labels.get(m.LABEL_SHARED) == "true" and labels.get(m.LABEL_LAB) == lab)
    if owned and labels.get(m.LABEL_LAB) == lab and api.delete("Namespace", namespace):
        deleted.append(f"Namespace/{namespace}")
    return deleted


def sweep(api: Api) -> list[str]:
    """Delete every object labelled as labctl's, in every namespace, then its namespaces."""
    managed = f"{MANAGED_BY}=labctl"
    deleted = []
    for kind in CLEAN_KINDS:
        for obj in api.list(kind, selector=managed):
            meta = obj["metadata"]
            if api.delete(kind, meta["name"], meta.get("namespace")):
                deleted.append(f"{kind}/{meta['name']}")
    for ns in api.list("Namespace", selector=managed):
        if not _deleting(ns) and api.delete("Namespace", ns["metadata"]["name"]):
            deleted.append(f"Namespace/{ns['metadata']['name']}")
    return deleted
