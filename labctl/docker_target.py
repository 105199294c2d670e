"""`labctl run LAB --target docker`: the pods `labctl render` makes for Kubernetes, run as Docker
containers on one machine.

Each Job's pod spec becomes one `docker run --init` on a user-defined network whose aliases are
the Services' DNS names (`NAME-worker-0.NAMESPACE.svc`, so TF_CONFIG is the cluster's, unchanged);
the ConfigMap becomes a read-only bind mount of its files, the PVC a bind mount of the run's
output dir, an emptyDir a tmpfs. labctl's Job controller supervises the containers exactly as it
supervises local processes. The image is the lab image built from labs/Dockerfile.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl import rundir, versions
from labctl.errors import UsageError
from labctl.job import JobSpec, Lines, Outcome, stop_gracefully
from labctl.k8s import manifests as m
from labctl.k8s.render import render
from labctl.labs import Lab
from labctl.local import LocalBackend, ProcessHandle
from labctl.plan import LabPlan
from labctl.record import RunRecord
from labctl.rundir import RunDir
from labctl.states import Target
from labctl.supervise import execute
from labctl.tasks import SINGLE, TaskSpec, parse_task

BUILD_HINT = "build it with `labs/build-image.sh` (no registry access: add --base IMAGE)"

PREFIX = "labctl"  # container and network names: labctl-<run-id>-...


def default_image() -> str:
    """The lab image labs/build-image.sh builds, tagged with the pinned TensorFlow."""
    return f"local/tf-lab:{versions.get('tensorflow_version')}"


class DockerError(UsageError):
    """Docker is missing or refuses: one line, exit 2, nothing left behind."""


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise DockerError("docker is not installed (the docker target needs a Docker daemon)")\
            from None
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DockerError(f"`docker {' '.join(args[:2])}` failed: {detail}")
    return proc


def preflight(image: str) -> None:
    if docker("info", "--format", "{{.ServerVersion}}", check=False).returncode != 0:
        raise DockerError("no Docker daemon answers: start Docker (or use --target local)")
    if docker("image", "inspect", image, check=False).returncode != 0:
        raise DockerError(f"image {image} not found: {BUILD_HINT}")


# --- from a rendered pod spec to `docker run` -----------------------------------------------------
def _quantity_cpus(value: str) -> str:
    """`2` or `500m`, capped at this host's CPUs (docker refuses more than there are)."""
    cpus = int(value[:-1]) / 1000 if value.endswith("m") else float(value)
    return f"{min(cpus, float(os.cpu_count() or 1)):g}"


def _quantity_bytes(value: str) -> str:
    units = {"Ki": "k", "Mi": "m", "Gi": "g"}
    return value[:-2] + units[value[-2:]] if value[-2:] in units else value


@dataclass(frozen=True)
class PodRun:
    """One Job's pod, as docker sees it."""

    task: TaskSpec
    job: str  # the Job's name
    alias: str | None  # the Service's DNS name, if the task has one
    argv: list[str]  # `docker run` options and command, without the container name


def write_configmap(configmap: m.Manifest, volume: m.Manifest, into: Path) -> None:
    """The files a configMap volume shows in the pod: each item's key at its path."""
    data = configmap.get("data", {})
    binary = configmap.get("binaryData", {})
    for item in volume["configMap"]["items"]:
        key, path = item["key"], into / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        if key in data:
            path.write_text(data[key])
        else:
            path.write_bytes(base64.b64decode(binary[key]))
        path.chmod(0o444)


def refuse_unsupported(docs: Sequence[m.Manifest]) -> None:
    """What one Docker host cannot honour: objects beyond TF jobs, GPUs."""
    unsupported = {d["kind"] for d in docs} - {"Namespace", "ConfigMap", "PersistentVolumeClaim",
                                                "Service", "Job"}
    if unsupported:
        raise DockerError(f"the docker target runs TF jobs only; this lab also needs "
                          f"{', '.join(sorted(unsupported))}: use --target k8s")
    for job in (d for d in docs if d["kind"] == "Job"):
        pod = job["spec"]["template"]["spec"]
        if pod.get("runtimeClassName") or any(m.GPU_RESOURCE in c["resources"]["limits"]
                                              for c in pod["containers"]):
            raise DockerError("this lab needs a GPU (nvidia.com/gpu): use --target k8s")


def pod_runs(docs: Sequence[m.Manifest], run: RunDir, image: str) -> list[PodRun]:
    """Translate the render's Jobs into `docker run` options."""
    refuse_unsupported(docs)
    by_kind: dict[str, dict[str, m.Manifest]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    runs = []
    for name, job in by_kind.get("Job", {}).items():
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        labels = job["metadata"]["labels"]
        task_labels = {k: v for k, v in labels.items() if k.startswith("labctl/")}
        argv = ["--init", "--rm"]
        for key, value in task_labels.items():
            argv += ["--label", f"{key}={value}"]
        service = by_kind.get("Service", {}).get(name)
        alias = f"{name}.{job['metadata']['namespace']}.svc" if service else None
        if alias:
            argv += ["--network-alias", alias]
        # As you, not as the pod's uid 1000: the output bind mount is your run directory.
        argv += ["--user", f"{os.getuid()}:{os.getgid()}"]
        security = container.get("securityContext", {})
        if security.get("readOnlyRootFilesystem"):
            argv.append("--read-only")
        for cap in security.get("capabilities", {}).get("drop", []):
            argv += ["--cap-drop", cap]
        if security.get("allowPrivilegeEscalation") is False:
            argv += ["--security-opt", "no-new-privileges"]
        limits = container["resources"]["limits"]
        argv += ["--cpus", _quantity_cpus(limits["cpu"]),
                 "--memory", _quantity_bytes(limits["memory"])]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in container["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                files = run.path / "configmaps" / volume["configMap"]["name"]
                if not files.exists():  # every task mounts the same ConfigMap
                    write_configmap(by_kind["ConfigMap"][volume["configMap"]["name"]], volume,
                                    files)
                argv += ["-v", f"{files}:{mount['mountPath']}:ro"]
            elif "persistentVolumeClaim" in volume:
                argv += ["-v", f"{run.output}:{mount['mountPath']}"]
            elif "emptyDir" in volume:
                argv += ["--tmpfs", f"{mount['mountPath']}:exec"]
            else:
                raise DockerError(f"volume {mount['name']} of job {name}: unsupported type")
        for var in container["env"]:
            argv += ["-e", f"{var['name']}={var['value']}"]
        command = container["command"]
        argv += ["--entrypoint", command[0], image, *command[1:], *container["args"]]
        runs.append(PodRun(_task_of(labels), name, alias, argv))
    return runs


def _task_of(labels: dict[str, str]) -> TaskSpec:
    slug = labels[m.LABEL_TASK]  # `worker-0`, or `main`
    return parse_task(slug if slug == SINGLE else ":".join(slug.rsplit("-", 1)))


# --- the backend ----------------------------------------------------------------------------------
class ContainerHandle:
    """A `docker run` client process; stopping goes to the container, not to the client
    (SIGKILL of the client would leave the container running)."""

    def __init__(self, inner: ProcessHandle, container: str) -> None:
        self.inner, self.container = inner, container

    def poll(self) -> int | None:
        return self.inner.poll()

    def wait(self, timeout: float | None) -> bool:
        return self.inner.wait(timeout)  # the client ends with its container

    def kill(self) -> None:
        docker("kill", self.container, check=False)

    def terminate(self) -> None:
        # --init: docker-init passes SIGTERM on to Python (PID 1 would ignore it).
        docker("kill", "--signal", "TERM", self.container, check=False)


class DockerBackend:
    def __init__(self, runs: Sequence[PodRun], run: RunDir, network: str) -> None:
        self.runs = {r.task: r for r in runs}
        self.run, self.network = run, network
        self.attempts: dict[TaskSpec, int] = {}
        self.local = LocalBackend(self._argv, lambda _t: os.environ, run.path)

    def name(self, task: TaskSpec) -> str:
        return f"{PREFIX}-{self.run.run_id}-{self.runs[task].job}-{self.attempts[task]}"

    def _argv(self, task: TaskSpec) -> list[str]:
        return ["docker", "run", "--name", self.name(task), "--network", self.network,
                *self.runs[task].argv]

    def start(self, task: TaskSpec, lines: Lines) -> ContainerHandle:
        self.attempts[task] = self.attempts.get(task, 0) + 1
        return ContainerHandle(self.local.start(task, lines), self.name(task))

    def stop_all(self, handles: list[ContainerHandle], grace_s: float) -> None:
        stop_gracefully(handles, grace_s)
        remove(self.run.run_id)


def remove(run_id: str) -> list[str]:
    """Remove a run's containers and network (by label: nothing else); what was removed."""
    label = f"label={m.LABEL_RUN}={run_id}"
    ids = docker("ps", "-aq", "--filter", label, check=False).stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False)
    nets = docker("network", "ls", "-q", "--filter", label, check=False).stdout.split()
    if nets:
        docker("network", "rm", *nets, check=False)
    return ids + nets


def start(run: RunDir, docs: Sequence[m.Manifest], image: str) -> tuple[DockerBackend,
                                                                       dict[str, Any]]:
    """Create the run's network and the backend for the controller (Docker already checked)."""
    runs = pod_runs(docs, run, image)
    network = f"{PREFIX}-{run.run_id}"
    docker("network", "create", "--label", f"{m.LABEL_RUN}={run.run_id}", network)
    facts = {"image": image, "network": network,
             "aliases": {r.task.name: r.alias for r in runs if r.alias}}
    return DockerBackend(runs, run, network), facts


def run(lab: Lab, plan: LabPlan, spec: JobSpec, record: RunRecord, quiet: bool,
        image: str | None = None) -> tuple[RunDir, Outcome]:
    """Run the lab's rendered pods as containers; containers and network go on every exit."""
    refuse_unsupported(render(lab, plan, m.Placement()))  # before a run dir exists
    image = image or default_image()
    preflight(image)
    run_dir = rundir.create(lab.name)
    where = m.Placement(run_id=run_dir.run_id)
    docs = render(lab, plan, where)
    try:
        backend, facts = start(run_dir, docs, image)
    except BaseException:
        remove(run_dir.run_id)
        raise
    record = record.update(target=Target.DOCKER, namespace=where.namespace,
                           cluster=m.cluster(lab, plan, where), **facts)
    return run_dir, execute(run_dir, spec, record, backend, quiet)
