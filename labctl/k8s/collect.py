"""A run's results back from its volume: a short-lived pod prints them as a base64 tar, labctl
unpacks them into the run directory, so checks read them as for a local run."""

from __future__ import annotations

import base64
import contextlib
import io
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labctl.k8s import manifests as m
from labctl.k8s import status
from labctl.k8s.api import Api, ClusterError
from labctl.k8s.waits import hopeless
from labctl.labs import Lab
from labctl.rundir import RunDir

COLLECT_TIMEOUT_S = 180.0


COLLECT_MAX_FILE = 2 * 1024 * 1024  # files larger than this stay on the volume


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
                hopeless([current], pending_since, clock)
            if clock() - started > COLLECT_TIMEOUT_S:
                raise ClusterError(f"pod {name} did not finish within {COLLECT_TIMEOUT_S:g} s "
                                   f"(phase {phase})")
            sleep(status.POLL_S)
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
