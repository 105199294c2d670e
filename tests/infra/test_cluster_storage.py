"""cluster: a volume of the default StorageClass written on one node and read on another.

The nfs_provisioner role's own smoke test (roles/nfs_provisioner/templates/nfs-smoke.yaml.j2:
a claim without storageClassName, a writer and a reader pod pinned to two nodes), rendered here
into this run's namespace with a fresh token. Binding a claim only shows that the provisioner
made a directory; the reader shows another kubelet mounted the export and saw the write. The
claim's archived directory is removed from the export afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _infra import (
    SETTLE_S,
    group_hosts,
    host_named,
    kubectl,
    kubectl_apply,
    kubectl_json,
    role_vars,
    until_no_problems,
    wait_pod_ended,
)
from _probes import smoke_objects
from conftest import needs


def test_a_volume_written_on_one_node_is_read_on_another(
    request: pytest.FixtureRequest, first_cp: Any
) -> None:
    needs(request, "control_plane", "node", "cni", "nfs_server", "nfs_provisioner")
    scratch_namespace = request.getfixturevalue("scratch_namespace")
    v = role_vars(first_cp, "nfs_provisioner")
    groups = {g: group_hosts(request, g) for g in ("kube_node", "kube_control_plane")}
    claim, writer, reader = smoke_objects(
        groups, scratch_namespace, v["nfs_provisioner_smoke_image"]
    )
    ns = f"-n {scratch_namespace}"
    try:
        kubectl_apply(first_cp, [claim, writer])
        wait_pod_ended(first_cp, scratch_namespace, "nfs-smoke-writer")
        kubectl_apply(first_cp, [reader])
        wait_pod_ended(first_cp, scratch_namespace, "nfs-smoke-reader")
        pods = kubectl_json(first_cp, f"{ns} get pods -l app.kubernetes.io/name=nfs-smoke")
        where = {p["metadata"]["name"]: (p["spec"].get("nodeName"), p["status"]["phase"])
                 for p in pods["items"]}  # fmt: skip
        volume = kubectl(first_cp, f"{ns} get pvc nfs-smoke -o jsonpath='{{.spec.volumeName}}'")
    finally:
        kubectl(first_cp, f"{ns} delete pod,pvc -l app.kubernetes.io/name=nfs-smoke --wait=true")
    assert {name: phase for name, (_, phase) in where.items()} == {
        "nfs-smoke-writer": "Succeeded",
        "nfs-smoke-reader": "Succeeded",
    }, f"see kubectl {ns} describe pod -l app.kubernetes.io/name=nfs-smoke"
    if len(group_hosts(request, "k8s_cluster")) > 1:
        assert where["nfs-smoke-writer"][0] != where["nfs-smoke-reader"][0], where
    # The provisioner archives the directory once the volume is deleted: wait for that first.
    until_no_problems(
        lambda: [f"pv {volume} not deleted"] if kubectl(
            first_cp, f"get pv {volume} --ignore-not-found -o name") else [],
        SETTLE_S,
        "the claim's volume to be deleted",
    )  # fmt: skip
    remove_archived(request, scratch_namespace, volume)


def remove_archived(request: pytest.FixtureRequest, namespace: str, volume: str) -> None:
    """The provisioner keeps a deleted claim as archived-<namespace>-<claim>-<volume>
    (archiveOnDelete); make verify leaves no directory behind on the export."""
    for name in group_hosts(request, "nfs_server"):
        server = host_named(request, name)
        export = Path(role_vars(server, "nfs_server")["nfs_server_export_path"])
        pattern = export / f"archived-{namespace}-nfs-smoke-{volume}"
        with server.sudo():
            server.check_output(f"rm -rf -- {pattern} {export / f'{namespace}-nfs-smoke-{volume}'}")
