"""control_plane: kubeadm's control plane on the private addresses, behind one endpoint."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _infra import GET, KUBECTL, kubectl_json, role_vars
from conftest import require_group


@pytest.fixture(autouse=True)
def _control_plane(host_vars: dict[str, Any]) -> None:
    require_group(host_vars, "kube_control_plane")


def endpoint(host_vars: dict[str, Any], node_ips: dict[str, str]) -> str:
    if host_vars.get("kube_vip_address"):
        return f"{host_vars['kube_vip_address']}:{host_vars['loadbalancer_port']}"
    first = host_vars["groups"]["kube_control_plane"][0]
    return f"{node_ips[first]}:{host_vars['kube_apiserver_port']}"


def test_api_server_is_ready(host: Any) -> None:
    with host.sudo():
        assert host.check_output(f"{KUBECTL} get --raw /readyz") == "ok"


def test_this_nodes_own_api_server_is_ready(host: Any, host_vars: dict[str, Any]) -> None:
    """admin.conf points at the VIP, which any API server may answer: ask this node's directly."""
    own = f"https://{host_vars['k8s_node_ip']}:{host_vars['kube_apiserver_port']}"
    with host.sudo():
        assert host.check_output(f"{KUBECTL} --server={own} get --raw /readyz") == "ok"


@pytest.mark.parametrize(("component", "port"), [
    ("kube-scheduler", 10259),
    ("kube-controller-manager", 10257),
])  # fmt: skip
def test_scheduler_and_controller_manager_live(host: Any, component: str, port: int) -> None:
    """kubeadm binds them to 127.0.0.1 (ports from kubeadm's constants); /livez is in the
    always-allowed paths of their delegated authorization, so no credentials are needed."""
    out = host.run(f"{GET} https://127.0.0.1:{port}/livez")
    assert out.rc == 0 and out.stdout.strip() == "ok", f"{component}: {out.stderr or out.stdout}"


def test_kubeconfigs_point_at_the_endpoint(
    host: Any, host_vars: dict[str, Any], node_ips: dict[str, str]
) -> None:
    with host.sudo():
        admin = host.file("/etc/kubernetes/admin.conf").content_string
    assert f"server: https://{endpoint(host_vars, node_ips)}" in admin
    user = host_vars.get("ansible_user") or "root"
    home = host.user(user).home
    assert host.file(f"{home}/.kube/config").exists, f"no kubeconfig for {user}"


def test_api_server_advertises_the_private_address(
    host: Any, host_vars: dict[str, Any], node_ips: dict[str, str]
) -> None:
    with host.sudo():
        manifest = host.file("/etc/kubernetes/manifests/kube-apiserver.yaml").content_string
    assert f"--advertise-address={host_vars['k8s_node_ip']}" in manifest
    if host_vars.get("etcd_external"):
        servers = next(line for line in manifest.splitlines() if "--etcd-servers=" in line)
        port = role_vars(host, "control_plane")["control_plane_etcd_client_port"]
        for name in host_vars["groups"][role_vars(host, "etcd")["etcd_group"]]:
            assert f"https://{node_ips[name]}:{port}" in servers, servers


def test_every_node_registered_with_its_private_address(
    host: Any, host_vars: dict[str, Any], node_ips: dict[str, str]
) -> None:
    nodes = kubectl_json(host, "get nodes")["items"]
    internal = {
        n["metadata"]["name"]: next(
            a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"
        )
        for n in nodes
    }
    for name in host_vars["groups"]["k8s_cluster"]:
        assert internal.get(name) == node_ips[name], f"{name}: InternalIP {internal.get(name)}"


def test_api_server_writes_its_audit_log(host: Any) -> None:
    """Lab 14 reads it: the static pod runs with the role's flags, and the log holds
    audit.k8s.io/v1 events at the Metadata level (the controllers' own writes fill it)."""
    conf = role_vars(host, "control_plane")
    if not conf["control_plane_audit_log"]:
        pytest.skip("control_plane_audit_log is false")
    log = f"{conf['control_plane_audit_dir']}/audit.log"
    with host.sudo():
        manifest = host.file("/etc/kubernetes/manifests/kube-apiserver.yaml").content_string
        assert f"--audit-log-path={log}" in manifest
        assert "--audit-policy-file=" in manifest
        last = host.check_output(f"tail -n 1 {log}")
    event = json.loads(last)
    assert event["apiVersion"] == "audit.k8s.io/v1" and event["level"] == "Metadata", event
    assert event["verb"] not in ("get", "list", "watch"), event  # the policy drops reads


def test_kube_proxy_runs_in_the_roles_mode(host: Any) -> None:
    """Lab 14 reads kube-proxy's iptables chains; kubeadm keeps its configuration here."""
    mode = role_vars(host, "control_plane")["control_plane_kube_proxy_mode"]
    config = kubectl_json(host, "-n kube-system get configmap kube-proxy")["data"]["config.conf"]
    assert f"mode: {mode}" in config.splitlines(), config
