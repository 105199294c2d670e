"""cluster: the whole cluster working together, checked once from the first control-plane node.

Each check names the roles (stages) whose work it checks. `make verify` on a full cluster runs
them all, and a missing piece fails. With --stages, a check whose roles were not all selected is
skipped with their names, never passed: the docker provider's offline run (no kubelet) leaves
only the etcd check, which then runs for real.
"""

from __future__ import annotations

import json
import re
import shlex
import uuid
from typing import Any

import pytest
from _infra import group_hosts, host_named, role_vars, skip_by_design, vars_of, wait_for
from conftest import selected_stages
from test_nvidia_gpu import FIND_GPU

KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
# The CNI's DaemonSet (namespace, name) for each kube_cni, as the cni role installs it.
CNI_DAEMONSETS = {
    "flannel": ("kube-flannel", "kube-flannel-ds"),
    "calico": ("calico-system", "calico-node"),
}
IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
# Pods and images may take a while on a fresh cluster (an image pull, metrics' first scrape).
SETTLE_S = 180


def needs(request: pytest.FixtureRequest, *roles: str) -> None:
    """Skip, naming them, unless every role this check depends on was selected."""
    selected = selected_stages(request.config)
    if selected is None:
        return
    missing = sorted(set(roles) - selected)
    if missing:
        ran = ", ".join(sorted(selected))
        pytest.skip(f"needs stage(s) {', '.join(missing)}, not run here (stages: {ran})")


@pytest.fixture(scope="module")
def first_cp(request: pytest.FixtureRequest) -> Any:
    names = group_hosts(request, "kube_control_plane")
    if not names:
        pytest.fail("the inventory has no host in kube_control_plane")
    return host_named(request, names[0])


@pytest.fixture(scope="module")
def cluster_ips(request: pytest.FixtureRequest) -> dict[str, str]:
    """k8s_node_ip of every k8s_cluster host (node names are inventory names)."""
    return {
        name: str(vars_of(request, name)["k8s_node_ip"])
        for name in group_hosts(request, "k8s_cluster")
    }


def kubectl(host: Any, args: str) -> str:
    with host.sudo():
        return str(host.check_output(f"{KUBECTL} {args}"))


def kubectl_json(host: Any, args: str) -> Any:
    return json.loads(kubectl(host, f"{args} -o json"))


def settle(host: Any, kind: str, name: str, done: set[str]) -> str:
    """Wait until the object's status.phase is one of `done`; return that phase."""
    phase = ""

    def finished() -> bool:
        nonlocal phase
        phase = kubectl(host, f"get {kind} {name} -o jsonpath='{{.status.phase}}'")
        return phase in done

    wait_for(finished, SETTLE_S, f"{kind} {name} to reach {' or '.join(sorted(done))}")
    return phase


def test_every_node_ready_on_its_private_address(
    request: pytest.FixtureRequest, first_cp: Any, cluster_ips: dict[str, str]
) -> None:
    needs(request, "control_plane", "node", "cni")
    seen = {}
    for node in kubectl_json(first_cp, "get nodes")["items"]:
        status = node["status"]
        ready = {c["type"]: c["status"] for c in status.get("conditions", [])}.get("Ready")
        internal = [a["address"] for a in status.get("addresses", []) if a["type"] == "InternalIP"]
        seen[node["metadata"]["name"]] = (ready, internal)
    assert seen == {name: ("True", [ip]) for name, ip in cluster_ips.items()}


def test_coredns_answers_a_service_name_from_a_pod(
    request: pytest.FixtureRequest, first_cp: Any
) -> None:
    needs(request, "control_plane", "node", "cni")
    domain = role_vars(first_cp, "control_plane")["control_plane_dns_domain"]
    # The busybox image the storage smoke test pins: one image to mirror for offline sites.
    image = role_vars(first_cp, "nfs_provisioner")["nfs_provisioner_smoke_image"]
    service_ip = kubectl(
        first_cp, "-n default get service kubernetes -o jsonpath='{.spec.clusterIP}'"
    )
    pod = f"verify-dns-{uuid.uuid4().hex[:8]}"
    kubectl(
        first_cp,
        f"-n default run {pod} --image={image} --restart=Never "
        f"--command -- nslookup kubernetes.default.svc.{domain}",
    )
    try:
        phase = settle(first_cp, "-n default pod", pod, {"Succeeded", "Failed"})
        logs = kubectl(first_cp, f"-n default logs {pod}")
    finally:
        kubectl(first_cp, f"-n default delete pod {pod} --wait=false --ignore-not-found")
    assert phase == "Succeeded", logs
    # The answer follows "Name:"; the DNS server's own address comes before it.
    answer = logs.split("Name:", 1)[-1]
    assert service_ip in IPV4.findall(answer), logs


def test_network_pods_ready_on_every_node(
    request: pytest.FixtureRequest, first_cp: Any, cluster_ips: dict[str, str]
) -> None:
    needs(request, "control_plane", "node", "cni")
    cni = vars_of(request, first_cp.backend.host)["kube_cni"]
    namespace, name = CNI_DAEMONSETS[cni]
    daemonset = kubectl_json(first_cp, f"-n {namespace} get daemonset {name}")
    labels = daemonset["spec"]["selector"]["matchLabels"]
    selector = ",".join(f"{key}={value}" for key, value in labels.items())
    ready_on = {
        pod["spec"].get("nodeName")
        for pod in kubectl_json(first_cp, f"-n {namespace} get pods -l {selector}")["items"]
        if pod["status"].get("phase") == "Running"
        and all(c["ready"] for c in pod["status"].get("containerStatuses", [{"ready": False}]))
    }
    assert ready_on == set(cluster_ips), f"{cni} pods not ready on {set(cluster_ips) - ready_on}"


def test_default_storage_class_binds_a_claim(request: pytest.FixtureRequest, first_cp: Any) -> None:
    needs(request, "control_plane", "node", "cni", "nfs_server", "nfs_provisioner")
    defaults = [
        sc["metadata"]["name"]
        for sc in kubectl_json(first_cp, "get storageclass")["items"]
        if sc["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert len(defaults) == 1, f"default StorageClasses: {defaults}"
    claim = f"verify-claim-{uuid.uuid4().hex[:8]}"
    # No storageClassName: the claim must land on the default class.
    manifest = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Mi"}}},
    }
    with first_cp.sudo():
        first_cp.check_output(
            f"printf %s {shlex.quote(json.dumps(manifest))} | {KUBECTL} create -f -"
        )
    try:
        phase = settle(first_cp, "-n default pvc", claim, {"Bound", "Lost"})
        bound = kubectl_json(first_cp, f"-n default get pvc {claim}")
    finally:
        kubectl(first_cp, f"-n default delete pvc {claim} --wait=false --ignore-not-found")
    assert phase == "Bound"
    assert bound["spec"]["storageClassName"] == defaults[0]


def test_kubectl_top_nodes_answers(
    request: pytest.FixtureRequest, first_cp: Any, cluster_ips: dict[str, str]
) -> None:
    needs(request, "control_plane", "node", "cni", "metrics")
    listed: set[str] = set()

    def every_node_listed() -> bool:
        with first_cp.sudo():
            out = first_cp.run(f"{KUBECTL} top nodes --no-headers")
        listed.clear()
        listed.update(line.split()[0] for line in out.stdout.splitlines() if line.strip())
        return out.rc == 0 and listed >= set(cluster_ips)

    # metrics-server answers once it has scraped every kubelet (about a minute after it starts).
    wait_for(every_node_listed, SETTLE_S, f"kubectl top nodes to list {sorted(cluster_ips)}")


def test_etcd_healthy_with_tls(request: pytest.FixtureRequest, first_cp: Any) -> None:
    v = role_vars(first_cp, "etcd")
    if not v.get("etcd_external", True):
        skip_by_design(
            "etcd_external is false: kubeadm's stacked etcd, whose health test_control_plane's "
            "API server readiness covers"
        )
    needs(request, "etcd")
    members = group_hosts(request, v["etcd_group"])
    endpoints = ",".join(
        f"https://{vars_of(request, m)['k8s_node_ip']}:{v['etcd_client_port']}" for m in members
    )
    # The API server's own client certificate, against every member: what kube-apiserver sees.
    with first_cp.sudo():
        out = first_cp.run(
            f"etcdctl --dial-timeout=3s --cacert={v['etcd_external_ca_file']} "
            f"--cert={v['etcd_external_cert_file']} --key={v['etcd_external_key_file']} "
            f"--endpoints={endpoints} endpoint health --write-out=json"
        )
    assert out.rc == 0, out.stderr
    health = {h["endpoint"]: h["health"] for h in json.loads(out.stdout)}
    assert health == dict.fromkeys(endpoints.split(","), True)


def test_gpu_nodes_offer_every_gpu(request: pytest.FixtureRequest, first_cp: Any) -> None:
    needs(request, "control_plane", "node", "nvidia_gpu")
    names = group_hosts(request, "gpu_nodes")
    if not names:
        skip_by_design("no host in gpu_nodes (GPUs are opt-in: see inventory/sample)")
    gpus = {name: len(host_named(request, name).run(FIND_GPU).stdout.split()) for name in names}
    if not any(gpus.values()):
        pytest.skip(f"LEFT TO A GPU MACHINE: no NVIDIA device on the PCI bus of {names}")
    nodes = {n["metadata"]["name"]: n for n in kubectl_json(first_cp, "get nodes")["items"]}
    offered = {
        name: int(nodes[name]["status"].get("capacity", {}).get("nvidia.com/gpu", 0))
        for name in names
        if name in nodes
    }
    assert offered == gpus
