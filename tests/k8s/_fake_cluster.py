"""An in-memory stand-in for labctl.k8s.api.Api: enough Kubernetes to exercise labctl's k8s logic
(preflight, rollback, supervision, collection, clean-up) without a cluster.

It is a mock: it proves labctl's logic against the behaviour written here (the Job controller
making one pod per attempt, podFailurePolicy, DisruptionTarget on deleted pods), not that the
real system behaves so. Each Job's pods follow a script of attempts, run on background threads.
"""

from __future__ import annotations

import base64
import copy
import io
import itertools
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labctl import versions
from labctl.k8s.api import ClusterError, _what, refusal

Key = tuple[str, str | None, str]  # kind, namespace, name
CLUSTER_SCOPED = {"Namespace", "StorageClass", "RuntimeClass", "Node"}
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


@dataclass
class Attempt:
    """One pod of a Job: prints `lines` (one every `every_s`), waits until the Jobs in
    `wait_for` completed, writes `files` to the volume, then exits with `exit_code`."""

    lines: list[str] = field(default_factory=list)
    exit_code: int = 0
    wait_for: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    every_s: float = 0.02
    forever: bool = False  # a server that only ends when deleted
    waiting: str | None = None  # stays Pending with this reason (e.g. ImagePullBackOff)
    waiting_message: str = "pull access denied"
    waiting_s: float | None = None  # then starts after all (a pull that succeeded on retry)


def _later(delay_s: float, fn: Any, *args: Any) -> None:
    """Call fn(*args) after delay_s on a daemon thread (a test's end never waits for it)."""
    timer = threading.Timer(delay_s, fn, args=args)
    timer.daemon = True
    timer.start()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f"{time.monotonic_ns()}"


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    def one(term: str) -> bool:  # `key=value`, or `key`: the label exists
        key, eq, value = term.partition("=")
        return labels.get(key) == value if eq else key in labels

    return all(one(term) for term in selector.split(","))


class FakeApi:
    host = "https://fake-apiserver:6443"

    def __init__(self, *, reachable: bool = True, storage_classes: tuple[str, ...] = (
            "nfs-client",), default_class: str | None = None,
            runtime_classes: tuple[str, ...] = (), gpus: int = 0,
            node_images: tuple[str, ...] = (),
            forbid: set[tuple[str, str]] | None = None,
            scripts: dict[str, list[Attempt]] | None = None,
            terminate_s: float = 0.3, collector: str = "ok",
            deadline_scale: float = 1.0,
            allow: Callable[[str, str], bool] | None = None) -> None:
        self.reachable = reachable
        # A deleted namespace stays, Terminating, until the namespace controller has emptied it.
        self.terminate_s = terminate_s
        self.collector = collector  # "ok", "garbled" (cut-off output) or a waiting reason
        self.deadline_scale = deadline_scale  # a second of activeDeadlineSeconds, in seconds
        self.forbid = forbid or set()
        self.allow = allow  # an authorizer: (verb, kind) -> allowed; others are refused 403
        self.scripts = scripts or {}
        self.objects: dict[Key, dict[str, Any]] = {}
        self.logs: dict[str, list[str]] = {}
        self.volume: dict[str, str] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.lock = threading.RLock()
        self.serial = itertools.count(1)
        self.versions = itertools.count(1)  # metadata.resourceVersion, as etcd's revision
        for name in storage_classes:
            # The annotation the DefaultStorageClass admission plugin looks for.
            default = {DEFAULT_CLASS: "true"} if name == default_class else {}
            self._put({"kind": "StorageClass", "metadata": {"name": name,
                                                            "annotations": default}})
        for name in runtime_classes:
            self._put({"kind": "RuntimeClass", "metadata": {"name": name}})
        self.add_node("node-1", gpus=gpus, images=node_images)

    def add_node(self, name: str, *, ready: bool = True, gpus: int = 0,
                 images: tuple[str, ...] = (), taints: tuple[str, ...] = ()) -> None:
        """A node as the kubelet reports it: the Ready condition, allocatable, the images it
        holds (status.images: each with its repo:tag and repo@digest names, registry spelled
        out as containerd does) and taint effects (the control plane's is NoSchedule)."""
        self._put({"kind": "Node", "metadata": {"name": name},
                   "spec": {"taints": [{"key": f"taint-{i}", "effect": effect}
                                       for i, effect in enumerate(taints)]},
                   "status": {
            "allocatable": {"cpu": "2", "nvidia.com/gpu": str(gpus)} if gpus else {"cpu": "2"},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            "reason": "KubeletReady" if ready else "KubeletNotReady"}],
            "images": [{"names": [f"docker.io/{image}", f"docker.io/{image.split(':')[0]}@sha256:"
                                  + "0" * 64], "sizeBytes": 2**30} for image in images]}})

    # --- storage --------------------------------------------------------------------------------
    def _key(self, kind: str, name: str, namespace: str | None) -> Key:
        return (kind, None if kind in CLUSTER_SCOPED else namespace, name)

    def _put(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("labels", {})
        meta["creationTimestamp"] = _now()
        meta["resourceVersion"] = str(next(self.versions))
        self.objects[self._key(obj["kind"], meta["name"], meta.get("namespace"))] = obj
        return obj

    def _refuse(self, code: int, what: str, message: str,
                cause: str | None = None) -> ClusterError:
        """The error Api raises for the Status the API server sends (upstream's wording)."""
        details = {"causes": [{"reason": cause}]} if cause else {}
        return refusal(what, code, {"kind": "Status", "code": code, "message": message,
                                    "details": details}, self.host, "kubeconfig")

    def _guard(self, verb: str, kind: str, name: str | None = None,
               namespace: str | None = None) -> None:
        self.calls.append((verb, kind, ""))
        if not self.reachable:
            raise ClusterError(f"cannot reach the Kubernetes API at {self.host}: refused")
        if (verb, kind) in self.forbid or (self.allow and not self.allow(verb, kind)):
            resource = kind.lower() + "s"
            where = f' in the namespace "{namespace}"' if namespace else ""
            raise self._refuse(403, _what(verb, kind, name, namespace),
                               f'{resource} is forbidden: User "attendee" cannot {verb} '
                               f'resource "{resource}"{where}')

    # --- the Api interface ----------------------------------------------------------------------
    def version(self) -> str:
        self._guard("get", "version")
        return "v" + versions.get("kube_version")

    def create(self, doc: dict[str, Any]) -> None:
        kind, meta = doc["kind"], doc["metadata"]
        ns = meta.get("namespace")
        what = _what("create", kind, meta["name"], ns)
        self._guard("create", kind, meta["name"], ns)
        with self.lock:
            key = self._key(kind, meta["name"], meta.get("namespace"))
            if key in self.objects:
                raise self._refuse(409, what, f'{kind.lower()}s "{meta["name"]}" already exists')
            if ns and kind not in CLUSTER_SCOPED:
                space = self.objects.get(self._key("Namespace", ns, None))
                if space is None:
                    raise self._refuse(404, what, f'namespaces "{ns}" not found')
                if space["status"].get("phase") == "Terminating":  # NamespaceLifecycle
                    raise self._refuse(
                        403, what, f'{kind.lower()}s "{meta["name"]}" is forbidden: unable to '
                        f"create new content in namespace {ns} because it is being terminated",
                        "NamespaceTerminating")
            obj = self._put(copy.deepcopy(doc))
            if kind == "Namespace":
                obj["status"] = {"phase": "Active"}
            self.calls[-1] = ("create", kind, meta["name"])
        if kind == "Job":
            obj["status"] = {}
            threading.Thread(target=self._job, args=(obj,), daemon=True).start()
            deadline = obj["spec"].get("activeDeadlineSeconds")
            if deadline:
                _later(deadline * self.deadline_scale, self._deadline, obj)
        if kind == "Pod" and meta["labels"].get("app.kubernetes.io/component") == "collector":
            obj["status"] = {"phase": "Succeeded"}
            self.logs[meta["name"]] = [self._tar_volume()]
            if self.collector == "garbled":
                self.logs[meta["name"]] = [self.logs[meta["name"]][0][:40]]
            elif self.collector != "ok":
                obj["status"] = {"phase": "Pending", "containerStatuses": [{
                    "image": doc["spec"]["containers"][0]["image"], "state": {"waiting": {
                        "reason": self.collector, "message": "not found"}}}]}

    def replace(self, doc: dict[str, Any]) -> None:
        kind, meta = doc["kind"], doc["metadata"]
        self._guard("update", kind, meta["name"], meta.get("namespace"))
        with self.lock:
            key = self._key(kind, meta["name"], meta.get("namespace"))
            current = self.objects.get(key)
            what = _what("replace", kind, meta["name"], meta.get("namespace"))
            if current is None:
                raise self._refuse(404, what, f'{kind.lower()}s "{meta["name"]}" not found')
            if meta.get("resourceVersion") != current["metadata"].get("resourceVersion"):
                raise self._refuse(409, what, "the object has been modified; please apply your "
                                   "changes to the latest version and try again")
            obj = self._put(copy.deepcopy(doc))
            if "status" in current:
                obj["status"] = current["status"]

    def token(self, service_account: str, namespace: str, seconds: int) -> str:
        self._guard("create", "ServiceAccount/token", service_account, namespace)
        if self.objects.get(self._key("ServiceAccount", service_account, namespace)) is None:
            raise self._refuse(404, "request a token", f'serviceaccounts "{service_account}" '
                               "not found")
        return f"token-{namespace}-{service_account}-{seconds}"

    def read(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        self._guard("get", kind)
        with self.lock:
            obj = self.objects.get(self._key(kind, name, namespace))
            return copy.deepcopy(obj) if obj else None

    def delete(self, kind: str, name: str, namespace: str | None = None,
               grace_s: int | None = None) -> bool:
        self._guard("delete", kind, name, namespace)
        with self.lock:
            key = self._key(kind, name, namespace)
            obj = self.objects.get(key)
            if obj is None:
                return False
            self.calls[-1] = ("delete", kind, name)
            if kind == "Namespace":
                if obj["status"].get("phase") != "Terminating":
                    obj["status"]["phase"] = "Terminating"
                    obj["metadata"]["deletionTimestamp"] = _now()
                    _later(self.terminate_s, self._finalize, name)
                return True
            del self.objects[key]
            if kind == "Job":
                for pod in self._pods_of(name, namespace):
                    self._remove_pod(pod)
            if kind == "Pod":
                obj["deleted"] = True
            return True

    def _finalize(self, namespace: str) -> None:
        """The namespace controller: delete the namespace's content, then the namespace."""
        with self.lock:
            for key in [k for k in self.objects if k[1] == namespace]:
                if key[0] == "Pod":
                    self._remove_pod(self.objects[key])
                self.objects.pop(key, None)
            self.objects.pop(self._key("Namespace", namespace, None), None)

    def evict(self, pod: str, namespace: str, grace_s: int | None = None) -> bool:
        """The Eviction API: the pod gets DisruptionTarget (reason EvictionByEvictionAPI),
        then goes as if deleted."""
        self._guard("evict", "Pod", pod, namespace)
        with self.lock:
            obj = self.objects.get(self._key("Pod", pod, namespace))
            if obj is None:
                return False
            obj["status"].setdefault("conditions", []).append({
                "type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"})
            obj["evicted"] = True
        return self.delete("Pod", pod, namespace, grace_s)

    def list(self, kind: str, namespace: str | None = None, selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        self._guard("list", kind)
        with self.lock:
            out = [copy.deepcopy(o) for k, o in self.objects.items()
                   if k[0] == kind and (namespace is None or k[1] == namespace)
                   and _matches(o["metadata"].get("labels", {}), selector)]
        for term in (field_selector or "").split(","):  # involvedObject.name=X,...
            if term:
                path, _, value = term.partition("=")
                field = path.removeprefix("involvedObject.")
                out = [o for o in out if o.get("involvedObject", {}).get(field) == value]
        return out

    def log_lines(self, pod: str, namespace: str, container: str):  # -> Iterator[str]
        sent = 0
        while True:
            with self.lock:
                lines = self.logs.get(pod, [])
                obj = self.objects.get(self._key("Pod", pod, namespace))
                done = obj is None or obj.get("status", {}).get("phase") in ("Succeeded",
                                                                              "Failed")
            while sent < len(lines):
                yield lines[sent]
                sent += 1
            if done:
                return
            time.sleep(0.01)

    def log(self, pod: str, namespace: str, container: str) -> str:
        self._guard("get", "Pod")
        return "\n".join(self.logs.get(pod, []))

    # --- the Job controller, as far as labctl relies on it --------------------------------------
    def _pods_of(self, job: str, namespace: str | None) -> list[dict[str, Any]]:
        return [o for k, o in self.objects.items() if k[0] == "Pod" and k[1] == namespace
                and o["metadata"]["labels"].get("batch.kubernetes.io/job-name") == job]

    def _remove_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.objects.pop(self._key("Pod", meta["name"], meta["namespace"]), None)
        pod["deleted"] = True

    def _complete(self, job: str, namespace: str) -> bool:
        with self.lock:
            obj = self.objects.get(self._key("Job", job, namespace))
        conds = (obj or {}).get("status", {}).get("conditions", [])
        return any(c["type"] == "Complete" for c in conds)

    def _deadline(self, job: dict[str, Any]) -> None:
        """activeDeadlineSeconds passed: the Job fails, its running pods are terminated."""
        meta = job["metadata"]
        with self.lock:
            if self._key("Job", meta["name"], meta["namespace"]) not in self.objects or \
                    job["status"].get("conditions"):
                return
            job["status"]["conditions"] = [{
                "type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                "message": "Job was active longer than specified deadline"}]
            for pod in self._pods_of(meta["name"], meta["namespace"]):
                self._remove_pod(pod)

    def _job(self, job: dict[str, Any]) -> None:
        meta, spec = job["metadata"], job["spec"]
        attempts = list(self.scripts.get(meta["name"], [Attempt()]))
        failures = 0
        while True:
            attempt = attempts.pop(0) if len(attempts) > 1 else attempts[0]
            pod = self._start_pod(job, attempt)
            code = self._run_pod(pod, attempt)
            with self.lock:
                if self._key("Job", meta["name"], meta["namespace"]) not in self.objects or \
                        job["status"].get("conditions"):
                    return  # the Job was deleted, or failed by its deadline
                if code is None and pod.get("evicted"):  # DisruptionTarget: the Ignore rule
                    continue
                if code is None:  # a plain DELETE: SIGKILL'd, Failed, counted as a failure
                    code = 137
                if code == 0:
                    job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
                    return
                if code == 2:
                    job["status"]["conditions"] = [{"type": "Failed", "status": "True",
                                                    "reason": "PodFailurePolicy"}]
                    return
                failures += 1
                job["status"]["failed"] = failures
                if failures > spec["backoffLimit"]:
                    job["status"]["conditions"] = [{
                        "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit"}]
                    return

    def _start_pod(self, job: dict[str, Any], attempt: Attempt) -> dict[str, Any]:
        meta = job["metadata"]
        labels = dict(job["spec"]["template"]["metadata"]["labels"])
        labels["batch.kubernetes.io/job-name"] = meta["name"]
        containers = job["spec"]["template"]["spec"]["containers"]
        image = containers[0]["image"]
        with self.lock:
            name = f"{meta['name']}-{next(self.serial):05d}"
            pod = self._put({"kind": "Pod", "metadata": {
                "name": name, "namespace": meta["namespace"], "labels": labels},
                "spec": {"nodeName": "node-1", "containers": copy.deepcopy(containers)},
                "status": {"phase": "Running", "containerStatuses": [
                    {"name": "tensorflow", "image": image, "state": {"running": {}},
                     "restartCount": 0}]}})
            if attempt.waiting:
                running = pod["status"]
                pod["status"] = {"phase": "Pending", "containerStatuses": [{
                    "name": "tensorflow", "image": image, "state": {"waiting": {
                        "reason": attempt.waiting, "message": attempt.waiting_message}}}]}
                if attempt.waiting_s is not None:
                    _later(attempt.waiting_s, self._start_after_wait, pod, running)
            self.logs[name] = []
        return pod

    def _start_after_wait(self, pod: dict[str, Any], running: dict[str, Any]) -> None:
        with self.lock:
            if not pod.get("deleted"):
                pod["status"] = running
                pod["started"] = True

    def _run_pod(self, pod: dict[str, Any], attempt: Attempt) -> int | None:
        name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
        while attempt.waiting and not pod.get("deleted") and not pod.get("started"):
            time.sleep(0.01)
        for line in attempt.lines:
            if pod.get("deleted"):
                return None
            with self.lock:
                self.logs[name].append(line)
            time.sleep(attempt.every_s)
        while attempt.forever or not all(self._complete(j, ns) for j in attempt.wait_for):
            if pod.get("deleted"):
                return None
            time.sleep(0.01)
        if pod.get("deleted"):
            return None
        with self.lock:
            self.volume.update(attempt.files)
            pod["status"] = {"phase": "Succeeded" if attempt.exit_code == 0 else "Failed",
                             "containerStatuses": [{"name": "tensorflow", "state": {
                                 "terminated": {"exitCode": attempt.exit_code}}}]}
        return attempt.exit_code

    def _tar_volume(self) -> str:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for path, text in sorted(self.volume.items()):
                data = text.encode()
                info = tarfile.TarInfo(path)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return base64.b64encode(buf.getvalue()).decode()

    def made(self, verb: str) -> list[str]:
        """`Kind/name` of every successful create or delete, in order."""
        return [f"{k}/{n}" for v, k, n in self.calls if v == verb and n]
