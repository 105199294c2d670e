"""Every manifest the cluster-services roles apply, valid for the pinned Kubernetes (1.37).

Rendered through Ansible (playbooks/services.yml) and checked with kubernetes-validate in strict
mode (unknown fields are errors), plus the wiring between objects that no schema sees.
metrics-server's manifest is upstream's, fetched at provisioning time: its patch is checked on
a fixture shaped like the release's Deployment.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from typing import Any

import pytest
import yaml
from _csr import csr, ip_san, own_sans
from _render_services import HA, docs, render
from cryptography.x509 import DNSName, RFC822Name
from kubernetes_validate import utils as kv

from labctl import versions

REPO = Path(__file__).resolve().parents[2]
# kubernetes-validate's schemas for the pinned minor version
KUBE_VERSION = ".".join(versions.get("kube_version").split(".")[:2]) + ".0"
MANIFESTS = [
    "nfs_provisioner__nfs-provisioner.yaml",
    "nfs_provisioner__nfs-smoke.yaml",
    "nvidia_gpu__nvidia-device-plugin.yaml",
]


@pytest.fixture(scope="module")
def out() -> Path:
    return render(HA)


@pytest.fixture(scope="module")
def first(out: Path) -> str:
    return next(iter(HA.control_plane))


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def validate(obj: dict[str, Any]) -> None:
    try:
        kv.validate(obj, KUBE_VERSION, strict=True)
    except kv.ValidationError as err:
        pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {err.message} at {list(err.path)}")


@pytest.mark.parametrize("name", MANIFESTS)
def test_rendered_manifest_is_valid_for_kubernetes_1_37(out: Path, first: str, name: str) -> None:
    objects = docs(out, first, name)
    assert objects
    for obj in objects:
        validate(obj)


def test_schema_check_catches_a_wrong_field(out: Path, first: str) -> None:
    """The validation above can fail: an unknown field in a rendered object is rejected."""
    (sc,) = by_kind(docs(out, first, MANIFESTS[0]), "StorageClass")
    with pytest.raises(kv.ValidationError):
        kv.validate({**sc, "provisionr": "typo"}, KUBE_VERSION, strict=True)


def test_provisioner_points_at_the_nfs_export(out: Path, first: str) -> None:
    objects = docs(out, first, MANIFESTS[0])
    (deploy,) = by_kind(objects, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    nfs_ip = HA.control_plane[first]  # nfs_server is the first control-plane node
    assert env["NFS_SERVER"] == nfs_ip and env["NFS_PATH"] == "/srv/nfs/k8s"
    assert pod["volumes"][0]["nfs"] == {"server": nfs_ip, "path": "/srv/nfs/k8s"}
    assert (
        container["image"] == "registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:"
        + versions.get("nfs_provisioner_version")
    )
    assert deploy["spec"]["strategy"]["type"] == "Recreate"
    (sc,) = by_kind(objects, "StorageClass")
    assert sc["metadata"]["name"] == "nfs-client"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["provisioner"] == env["PROVISIONER_NAME"]


def test_provisioner_rbac_binds_its_service_account(out: Path, first: str) -> None:
    objects = docs(out, first, MANIFESTS[0])
    (deploy,) = by_kind(objects, "Deployment")
    account = deploy["spec"]["template"]["spec"]["serviceAccountName"]
    namespace = deploy["metadata"]["namespace"]
    roles = {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"].endswith("Role")}
    for binding in by_kind(objects, "ClusterRoleBinding") + by_kind(objects, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": namespace}
        ]
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in roles
    (cluster_role,) = by_kind(objects, "ClusterRole")
    pv_rule = next(r for r in cluster_role["rules"] if "persistentvolumes" in r["resources"])
    assert {"create", "delete"} <= set(pv_rule["verbs"])


def test_smoke_claim_uses_the_default_class_and_pods_share_a_token(out: Path, first: str) -> None:
    objects = docs(out, first, MANIFESTS[1])
    (claim,) = by_kind(objects, "PersistentVolumeClaim")
    assert "storageClassName" not in claim["spec"], "the smoke test must exercise the default"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    writer, reader = by_kind(objects, "Pod")
    scripts = [p["spec"]["containers"][0]["command"][-1] for p in (writer, reader)]
    assert scripts == ["echo 424242 > /data/smoke", "grep -qx 424242 /data/smoke"]
    for pod in (writer, reader):
        assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "nfs-smoke"
        assert pod["spec"]["restartPolicy"] == "Never"
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert not pod["spec"]["containers"][0]["image"].endswith(":latest")
    # Two nodes, workers first: another kubelet must mount what the writer wrote.
    nodes = [p["spec"]["nodeSelector"]["kubernetes.io/hostname"] for p in (writer, reader)]
    assert len(set(nodes)) == 2 and set(nodes) <= set(HA.workers), nodes


def test_device_plugin_runs_under_the_nvidia_runtime_on_gpu_nodes(out: Path, first: str) -> None:
    objects = docs(out, first, MANIFESTS[2])
    (runtime_class,) = by_kind(objects, "RuntimeClass")
    assert runtime_class["metadata"]["name"] == "nvidia" and runtime_class["handler"] == "nvidia"
    (ds,) = by_kind(objects, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["containers"][0]["image"] == "nvcr.io/nvidia/k8s-device-plugin:" + versions.get(
        "nvidia_gpu_device_plugin_version")
    assert pod["volumes"][0]["hostPath"]["path"] == "/var/lib/kubelet/device-plugins"
    assert ds["metadata"]["namespace"] == by_kind(objects, "Namespace")[0]["metadata"]["name"]


def _metrics_patch() -> Any:
    """The role's filter, loaded from its file as Ansible would."""
    return runpy.run_path(str(REPO / "roles/metrics/filter_plugins/metrics_server.py"))[
        "metrics_server_patch"
    ]


# Shaped like the release's components.yaml Deployment (only what the patch touches and what
# the schema requires); the real one is fetched by the role at provisioning time.
FIXTURE = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: metrics-server, namespace: kube-system}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: metrics-server, namespace: kube-system}
spec:
  selector: {matchLabels: {k8s-app: metrics-server}}
  template:
    metadata: {labels: {k8s-app: metrics-server}}
    spec:
      serviceAccountName: metrics-server
      containers:
        - name: metrics-server
          image: registry.k8s.io/metrics-server/metrics-server:v0.0.0
          args:
            - --cert-dir=/tmp
            - --secure-port=10250
            - --kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname
            - --kubelet-use-node-status-port
            - --metric-resolution=15s
"""


def _metrics_args(tls: str) -> list[str]:
    defaults = yaml.safe_load((REPO / "roles/metrics/defaults/main.yml").read_text())
    extra = ["--kubelet-insecure-tls"] if tls == "insecure" else []
    patched = _metrics_patch()(
        list(yaml.safe_load_all(FIXTURE)), defaults["metrics_server_args"] + extra
    )
    for obj in patched:
        validate(obj)
    (deploy,) = by_kind(patched, "Deployment")
    return deploy["spec"]["template"]["spec"]["containers"][0]["args"]


def test_metrics_server_reaches_kubelets_on_internal_ip_with_verified_tls() -> None:
    args = _metrics_args("bootstrap")
    assert [a for a in args if a.startswith("--kubelet-preferred-address-types")] == [
        "--kubelet-preferred-address-types=InternalIP"
    ]
    assert "--kubelet-insecure-tls" not in args
    assert args.count("--kubelet-use-node-status-port") == 1
    assert "--secure-port=10250" in args  # untouched upstream flags stay


def test_metrics_server_insecure_mode_is_explicit() -> None:
    assert "--kubelet-insecure-tls" in _metrics_args("insecure")


def test_metrics_patch_refuses_an_unexpected_manifest() -> None:
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="expected one Deployment"):
        _metrics_patch()([{"kind": "Service", "metadata": {"name": "metrics-server"}}], [])


def test_metrics_server_release_is_pinned() -> None:
    defaults = yaml.safe_load((REPO / "roles/metrics/defaults/main.yml").read_text())
    assert re.fullmatch(r"v\d+\.\d+\.\d+", versions.get("metrics_server_version"))
    assert "releases/download/{{ metrics_server_version }}/components.yaml" in defaults[
        "metrics_server_manifest_url"
    ].replace("\n", "")


NODES = {"k8s-worker-1": "192.168.56.21", "k8s-worker-2": "192.168.56.22"}


def _own(node: str) -> list[Any]:
    return own_sans(node, NODES[node])


def test_kubelet_serving_requests_are_approved_only_for_the_node_itself() -> None:
    approve = runpy.run_path(str(REPO / "roles/kubelet_csr/filter_plugins/kubelet_csr.py"))[
        "kubelet_csrs_to_approve"
    ]
    w1, w2 = "system:node:k8s-worker-1", "system:node:k8s-worker-2"
    nat = ip_san("10.0.2.15")
    csrs = [
        csr("good-1", w1, _own("k8s-worker-1")),
        csr("good-2-name-only", w2, [DNSName("k8s-worker-2")]),
        csr("nat-address", w1, [*_own("k8s-worker-1"), nat]),
        csr("other-nodes-name", w1, [DNSName("k8s-worker-2")]),
        csr("unknown-node", "system:node:intruder", [DNSName("intruder")]),
        csr("not-a-node", "alice", [DNSName("k8s-worker-1")]),
        csr("cn-of-another-node", w1, _own("k8s-worker-1"), cn=w2),
        csr(
            "client-signer",
            w1,
            _own("k8s-worker-1"),
            spec={"signerName": "kubernetes.io/kube-apiserver-client-kubelet"},
        ),
        csr(
            "already-approved",
            w1,
            _own("k8s-worker-1"),
            top={"status": {"conditions": [{"type": "Approved"}]}},
        ),
        csr("email-san", w1, [*_own("k8s-worker-1"), RFC822Name("a@b.c")]),
    ]
    assert approve(csrs, NODES) == ["good-1", "good-2-name-only"]
