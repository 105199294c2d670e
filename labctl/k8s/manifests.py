"""Kubernetes manifests for one lab run, as plain dicts: no cluster, no client library needed.

One run is: a ConfigMap with the lab's program(s) and labkit, a PVC on the NFS StorageClass
shared by every task as --output-dir, and per TF task one headless Service (its stable DNS name,
port 2222) and one Job (TF_CONFIG built from those names, the TFJob convention). The same dicts
drive `labctl render`, the static `labs/NN/k8s/` dirs, the cluster run and the docker target.
"""

from __future__ import annotations

import base64
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl import taskenv, versions
from labctl.labs import Lab, LabError, labs_dir
from labctl.plan import LabPlan, args_argv
from labctl.tasks import SINGLE, TaskSpec
from labctl.tfconfig import cluster_spec, tf_config

Manifest = dict[str, Any]

PORT = 2222
PORT_NAME = "tfjob-port"  # the name TFJob gives the same port
CONTAINER = "tensorflow"
PROGRAM_MOUNT = "/lab"
OUTPUT_MOUNT = "/output"
STORAGE_CLASS = "nfs-client"  # roles/nfs_provisioner
RUNTIME_CLASS = "nvidia"  # roles/nvidia_gpu
GPU_RESOURCE = "nvidia.com/gpu"
OUTPUT_SIZE = "1Gi"
BACKOFF_LIMIT = 3
# A run's Jobs end by this deadline even when nobody is left to stop them (labctl killed, the
# laptop asleep): activeDeadlineSeconds, counted from the Job's start, image pulls included.
# A lab sets its own with [k8s] deadline; `labctl run --deadline S` overrides both.
DEADLINE_S = 1800
UID = 1000  # the pods' user: the official images run as root unless told otherwise
# What every TF task asks of the scheduler and may use at most; a run may set one task's CPU.
REQUESTS = {"cpu": "250m", "memory": "768Mi"}
LIMITS = {"cpu": "2", "memory": "2Gi"}
_CPU = re.compile(r"^(\d+m|\d+(\.\d{1,3})?)$")  # 250m, 2, 0.5: what `labctl` accepts
CONFIGMAP_LIMIT = 1024 * 1024  # the API server's limit on a ConfigMap's data

# What `labctl render` and the static k8s/ dirs use when no run exists.
DEFAULT_NAMESPACE = "tf-lab"
MANUAL_RUN = "manual"

PART_OF = "tf-k8s-workshop"
LABEL_LAB = "labctl/lab"
LABEL_RUN = "labctl/run-id"
LABEL_TASK = "labctl/task"
LABEL_SHARED = "labctl/shared"  # outlives a run: reused by the lab's next run in the namespace

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_K8S_KEYS = {"name", "gpu", "own_namespace", "volume", "extra", "jobs", "deadline"}


class RenderError(LabError):
    """The lab's [k8s] table or files cannot make valid manifests."""


@dataclass(frozen=True)
class Settings:
    """A lab's `[k8s]` table (labs/README.md), validated."""

    name: str  # resource-name prefix; may use {run} and the lab's [args]
    gpu: bool  # every task asks for one nvidia.com/gpu, GPU image, RuntimeClass nvidia
    own_namespace: bool  # runs only in the attendee's namespace, never one made per run
    volume: str | None  # a fixed PVC name, shared by the lab's runs in that namespace
    extra: tuple[str, ...]  # hand-written manifests (lab-relative), applied with the run
    jobs: bool  # run the program as TF Jobs (false: it only ships in the ConfigMap)
    deadline: int  # seconds a run's Jobs may live (activeDeadlineSeconds)


def settings(lab: Lab) -> Settings:
    table: dict[str, Any] = dict(getattr(lab, "k8s", None) or {})
    where = f"{lab.path / 'lab.toml'} [k8s]"
    unknown = set(table) - _K8S_KEYS
    if unknown:
        raise RenderError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    name = table.get("name", lab.name.partition("-")[2])
    extra = table.get("extra", [])
    checks = {
        "name": isinstance(name, str) and name != "",
        "gpu": isinstance(table.get("gpu", False), bool),
        "jobs": isinstance(table.get("jobs", True), bool),
        "own_namespace": isinstance(table.get("own_namespace", False), bool),
        "volume": isinstance(table.get("volume", ""), str),
        "extra": isinstance(extra, list) and all(isinstance(e, str) for e in extra),
    }
    for key, ok in checks.items():
        if not ok:
            raise RenderError(f"{where}: `{key}` has the wrong type")
    deadline = table.get("deadline", DEADLINE_S)
    if type(deadline) is not int or deadline <= 0:
        raise RenderError(f"{where}: `deadline` must be a whole number of seconds > 0")
    if "volume" in table and not _DNS_LABEL.match(table["volume"]):
        raise RenderError(f"{where}: `volume` must be a DNS label (a-z, 0-9, -)")
    if "volume" in table and not table.get("own_namespace", False):
        raise RenderError(f"{where}: a shared `volume` needs `own_namespace = true` (runs in "
                          "namespaces of their own would not share it)")
    for rel in extra:
        if not (lab.path / rel).is_file():
            raise RenderError(f"{where}: extra manifest {rel!r} does not exist")
    return Settings(
        name=name,
        gpu=table.get("gpu", False),
        own_namespace=table.get("own_namespace", False),
        volume=table.get("volume"),
        extra=tuple(extra),
        jobs=table.get("jobs", True),
        deadline=deadline,
    )


@dataclass(frozen=True)
class Placement:
    """Where a run goes: its namespace and run id (the clean-up label)."""

    namespace: str = DEFAULT_NAMESPACE
    run_id: str = MANUAL_RUN
    create_namespace: bool = True  # False: an attendee's existing namespace (--namespace)
    image: str | None = None  # override the pinned official image
    backoff_limit: int = BACKOFF_LIMIT
    deadline_s: int | None = None  # None: the lab's [k8s] deadline
    # One task's CPU for this run, task name -> quantity (`--cpu-request/--cpu-limit TASK=CPU`):
    # an experiment on scheduling and throttling (lab 15).
    cpu_requests: Mapping[str, str] = field(default_factory=dict)
    cpu_limits: Mapping[str, str] = field(default_factory=dict)


def render_placement(lab: Lab, namespace: str | None = None, image: str | None = None) -> Placement:
    """Where `labctl render` (and the static dirs) put a lab: --namespace (an existing one), or
    tf-lab, which the manifests create."""
    return Placement(namespace=namespace or DEFAULT_NAMESPACE,
                     create_namespace=namespace is None, image=image)


def run_namespace(lab: Lab, run_id: str) -> str:
    """The namespace made for a run when the attendee has none of their own."""
    return _dns_label(f"tf-{lab.number:02d}-{run_id}")


def need_namespace(lab: Lab, namespace: str | None) -> None:
    """A lab with own_namespace runs only in one the attendee has (--namespace, or the
    kubeconfig context's): its README's commands and its next runs find it there."""
    if namespace is None and settings(lab).own_namespace:
        raise RenderError(
            f"lab {lab.name} runs in your own namespace: make one your context's (`kubectl "
            "create namespace workshop && kubectl config set-context --current --namespace "
            "workshop`) or pass --namespace NS")


def _dns_label(text: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].rstrip("-")
    if not _DNS_LABEL.match(label):
        raise RenderError(f"cannot make a DNS label from {text!r}")
    return label


class Names:
    """Every resource name of a run, in one place (Service names are TF_CONFIG hosts)."""

    def __init__(self, lab: Lab, plan: LabPlan, where: Placement) -> None:
        conf = settings(lab)
        fields = {k: str(v) for k, v in plan.args.items()} | {"run": where.run_id}
        try:
            base = string.Formatter().vformat(conf.name, (), fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise RenderError(f"{lab.path / 'lab.toml'} [k8s] name {conf.name!r}: no field "
                              f"{exc}; use {{run}} or an [args] name") from None
        self.base = _dns_label(base)
        self.namespace = where.namespace
        self.configmap = f"{self.base}-programs"
        self.volume = conf.volume or f"{self.base}-output"

    def task(self, task: TaskSpec) -> str:
        """Job and Service name: `NAME-worker-0` (TFJob's convention)."""
        name = f"{self.base}-{task.slug}"
        if len(name) > 63:
            raise RenderError(f"resource name {name!r} is longer than 63 characters: shorten "
                              "the lab's [k8s] name")
        return name

    def host(self, task: TaskSpec) -> str:
        return f"{self.task(task)}.{self.namespace}.svc:{PORT}"


def labels(lab: Lab, where: Placement, component: str, task: TaskSpec | None = None,
           shared: bool = False) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "tensorflow",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "labctl",
        LABEL_LAB: lab.name,
    }
    if shared:
        out[LABEL_SHARED] = "true"
    else:
        out[LABEL_RUN] = where.run_id
    if task is not None:
        out[LABEL_TASK] = task.slug
    return out


def _meta(name: str, where: Placement, lab_labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": where.namespace, "labels": lab_labels}


# --- the ConfigMap: program files and labkit -----------------------------------------------------
def program_files(lab: Lab) -> dict[str, Path]:
    """Mount path below /lab -> file: the program's directory (its .py files but check.py)
    and labkit. The program may live in another lab (lab 09 runs labs 04-06's programs)."""
    root = labs_dir().resolve()
    program = (lab.path / lab.program).resolve()
    if not program.is_relative_to(root):
        raise RenderError(f"program {lab.program!r} of {lab.name} lies outside {root}")
    files = {
        str(p.relative_to(root)): p
        for p in sorted(program.parent.glob("*.py"))
        if p.name != "check.py"
    }
    for p in sorted((root / "labkit").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            files[str(p.relative_to(root))] = p
    return files


def _key(path: str) -> str:
    """ConfigMap keys cannot hold '/': `labkit/data.py` -> `labkit__data.py` (items map back)."""
    return path.replace("/", "__")


def configmap(lab: Lab, names: Names, where: Placement) -> Manifest:
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    size = 0
    for path, file in program_files(lab).items():
        raw = file.read_bytes()
        size += len(raw)
        try:
            data[_key(path)] = raw.decode("utf-8")
        except UnicodeDecodeError:
            binary[_key(path)] = base64.b64encode(raw).decode("ascii")
    if size > CONFIGMAP_LIMIT:
        raise RenderError(f"{lab.name}: program files total {size} bytes, over a ConfigMap's "
                          f"{CONFIGMAP_LIMIT}: ship large data another way")
    manifest: Manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(names.configmap, where, labels(lab, where, "programs")),
        "data": data,
    }
    if binary:
        manifest["binaryData"] = binary
    return manifest


def program_volume(lab: Lab, names: Names) -> Manifest:
    items = [{"key": _key(p), "path": p} for p in program_files(lab)]
    return {"name": "programs",
            "configMap": {"name": names.configmap, "items": items, "defaultMode": 0o444}}


# --- storage --------------------------------------------------------------------------------------
def pvc(lab: Lab, names: Names, where: Placement) -> Manifest:
    shared = settings(lab).volume is not None
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(names.volume, where, labels(lab, where, "storage", shared=shared)),
        "spec": {
            "accessModes": ["ReadWriteMany"],  # every task of the run, on any node
            "storageClassName": STORAGE_CLASS,
            "resources": {"requests": {"storage": OUTPUT_SIZE}},
        },
    }


# --- one TF task: Service + Job -------------------------------------------------------------------
def service(lab: Lab, names: Names, where: Placement, task: TaskSpec) -> Manifest:
    task_labels = labels(lab, where, task.type, task)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(names.task(task), where, task_labels),
        "spec": {
            "clusterIP": "None",  # headless: the name resolves to the pod itself
            # TF tasks dial each other while starting, before any readiness.
            "publishNotReadyAddresses": True,
            "selector": {LABEL_RUN: where.run_id, LABEL_LAB: lab.name, LABEL_TASK: task.slug},
            "ports": [{"name": PORT_NAME, "port": PORT, "targetPort": PORT_NAME,
                       "protocol": "TCP"}],
        },
    }


def image(lab: Lab, where: Placement) -> str:
    return where.image or tf_image(settings(lab).gpu)


def tf_image(gpu: bool = False) -> str:
    """The official TensorFlow image at the pinned version (versions.yml), or its CUDA build."""
    return f"tensorflow/tensorflow:{versions.get('tensorflow_version')}" + ("-gpu" if gpu else "")


def pod_security() -> Manifest:
    """The pod-level half of Pod Security 'restricted'; the namespace enforces it."""
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security() -> Manifest:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}


def millicores(quantity: str) -> int:
    """A CPU quantity as Kubernetes writes it (`250m`, `2`, `0.5`), in millicores."""
    if not _CPU.match(quantity):
        raise RenderError(f"{quantity!r} is not a CPU quantity: write millicores (100m) or "
                          "cores (0.5, 4)")
    value = int(quantity[:-1]) if quantity.endswith("m") else round(float(quantity) * 1000)
    if value <= 0:
        raise RenderError(f"a CPU quantity must be more than 0, not {quantity!r}")
    return value


def resources(lab: Lab, where: Placement, task: TaskSpec) -> Manifest:
    """The task's requests and limits: the defaults, with the CPU the run set for it. The API
    server refuses a request above its limit, so a lower limit lowers the default request with
    it, and a higher request raises the default limit."""
    requests, limits = dict(REQUESTS), dict(LIMITS)
    request, limit = where.cpu_requests.get(task.name), where.cpu_limits.get(task.name)
    if request and limit and millicores(request) > millicores(limit):
        raise RenderError(f"{task.name}: the CPU request {request} is above its limit {limit}")
    if limit:
        limits["cpu"] = limit
        if millicores(requests["cpu"]) > millicores(limit):
            requests["cpu"] = limit
    if request:
        requests["cpu"] = request
        if millicores(request) > millicores(limits["cpu"]):
            limits["cpu"] = request
    if settings(lab).gpu:
        limits[GPU_RESOURCE] = "1"
    return {"requests": requests, "limits": limits}


def container(lab: Lab, plan: LabPlan, names: Names, where: Placement,
              task: TaskSpec, cluster: dict[str, list[str]]) -> Manifest:
    root = labs_dir().resolve()
    program = (lab.path / lab.program).resolve().relative_to(root)
    env = taskenv.container(PROGRAM_MOUNT,
                            None if task.type == SINGLE else tf_config(cluster, task))
    spec: Manifest = {
        "name": CONTAINER,
        "image": image(lab, where),
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", f"{PROGRAM_MOUNT}/{program}"],
        "args": ["--output-dir", OUTPUT_MOUNT, *args_argv(plan.args)],
        "env": env,
        "resources": resources(lab, where, task),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "programs", "mountPath": PROGRAM_MOUNT, "readOnly": True},
            {"name": "output", "mountPath": OUTPUT_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if task.type != SINGLE:
        spec["ports"] = [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}]
    return spec


def job(lab: Lab, plan: LabPlan, names: Names, where: Placement, task: TaskSpec,
        cluster: dict[str, list[str]]) -> Manifest:
    task_labels = labels(lab, where, task.type, task)
    pod_spec: Manifest = {
        # Job-level retries (a new pod each time, up to backoffLimit) instead of kubelet
        # restarts: podFailurePolicy is only allowed with restartPolicy Never.
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": pod_security(),
        "containers": [container(lab, plan, names, where, task, cluster)],
        "volumes": [
            program_volume(lab, names),
            {"name": "output", "persistentVolumeClaim": {"claimName": names.volume}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if settings(lab).gpu:
        pod_spec["runtimeClassName"] = RUNTIME_CLASS
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(names.task(task), where, task_labels),
        "spec": {
            "backoffLimit": where.backoff_limit,
            "activeDeadlineSeconds": where.deadline_s or settings(lab).deadline,
            "podFailurePolicy": {"rules": [
                # Exit 2 is a configuration error (labs/README.md): retrying cannot fix it.
                {"action": "FailJob",
                 "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [2]}},
                # A deleted or evicted pod is replaced without using up the back-off limit.
                {"action": "Ignore",
                 "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]},
            "template": {"metadata": {"labels": task_labels}, "spec": pod_spec},
        },
    }


def namespace(lab: Lab, where: Placement) -> Manifest:
    ns_labels = labels(lab, where, "namespace")
    # Every pod of a run meets Pod Security "restricted"; enforce it so a change that does not
    # fails at admission, not in production.
    ns_labels["pod-security.kubernetes.io/enforce"] = "restricted"
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": where.namespace, "labels": ns_labels}}


def cluster_of(names: Names, tasks: Iterable[TaskSpec]) -> dict[str, list[str]]:
    return cluster_spec([t for t in tasks if t.type != SINGLE], names.host)


def cluster(lab: Lab, plan: LabPlan, where: Placement) -> dict[str, list[str]]:
    """The TF_CONFIG cluster of a run: Service DNS names on port 2222."""
    return cluster_of(Names(lab, plan, where), plan.tasks)
