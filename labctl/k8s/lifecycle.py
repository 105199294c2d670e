"""A run's objects on the cluster: preflight (creating nothing), create or roll back, clean up."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from labctl.k8s import manifests as m
from labctl.k8s.api import Api, ClusterError, Forbidden
from labctl.k8s.status import deleting
from labctl.k8s.waits import wait_gone
from labctl.labs import Lab
from labctl.rundir import RunDir


class Skipped(Exception):
    """The cluster cannot run this lab at all (lab 10 without GPUs): not a failure."""


def selector(run_id: str, lab: Lab) -> str:
    return f"{m.LABEL_RUN}={run_id},{m.LABEL_LAB}={lab.name}"


def read_namespace(api: Api, name: str) -> dict[str, Any] | None:
    """The namespace, None when it is gone, {} when we may not read it: an attendee's Role
    cannot grant reading namespaces (cluster-scoped), only working in their own."""
    try:
        return api.read("Namespace", name)
    except Forbidden:
        return {}


def gpu_capacity(api: Api) -> int:
    try:
        nodes = api.list("Node")
    except Forbidden:
        return -1  # cannot tell: let the scheduler decide
    return sum(int(n.get("status", {}).get("allocatable", {}).get(m.GPU_RESOURCE, 0))
               for n in nodes)


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
        space = read_namespace(api, where.namespace)
        if space is None or deleting(space):
            state = "is being deleted" if space else "does not exist"
            raise ClusterError(f"namespace {where.namespace} {state}: create it (`kubectl "
                               f"create namespace {where.namespace}`) or drop --namespace")
    todo = []
    for doc in docs:
        meta = doc["metadata"]
        existing = api.read(doc["kind"], meta["name"], meta.get("namespace"))
        if deleting(existing):
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


# A CronJob first: deleted after its Jobs, it could start another one meanwhile.
CLEAN_KINDS = ("CronJob", "Job", "Pod", "Deployment", "Service", "ConfigMap",
               "PersistentVolumeClaim")


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
    if read_namespace(api, namespace) is None:
        return []
    for sel in selectors:
        for kind in CLEAN_KINDS:
            for obj in api.list(kind, namespace, sel):
                if api.delete(kind, obj["metadata"]["name"], namespace):
                    deleted.append(f"{kind}/{obj['metadata']['name']}")
    ns = read_namespace(api, namespace) or {}
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
        if not deleting(ns) and api.delete("Namespace", ns["metadata"]["name"]):
            deleted.append(f"Namespace/{ns['metadata']['name']}")
    return deleted
