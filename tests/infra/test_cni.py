"""cni: the pod network runs on every node, on kube_pod_subnet and the private interface."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from _infra import kubectl_json, skip_by_design


@pytest.fixture(autouse=True)
def _first_control_plane(host_vars: dict[str, Any]) -> None:
    first = host_vars["groups"].get("kube_control_plane", [None])[0]
    if host_vars["inventory_hostname"] != first:
        skip_by_design(f"{host_vars['inventory_hostname']} is not the first control-plane node")


def test_network_pods_ready_on_every_node(host: Any, host_vars: dict[str, Any]) -> None:
    if host_vars["kube_cni"] == "flannel":
        ds = kubectl_json(host, "-n kube-flannel get daemonset kube-flannel-ds")
    else:
        ds = kubectl_json(host, "-n calico-system get daemonset calico-node")
    nodes = len(host_vars["groups"]["k8s_cluster"])
    assert ds["status"]["desiredNumberScheduled"] == nodes
    assert ds["status"]["numberReady"] == nodes


def test_node_pod_ranges_inside_the_pod_network(host: Any, host_vars: dict[str, Any]) -> None:
    network = ipaddress.ip_network(host_vars["kube_pod_subnet"])
    for node in kubectl_json(host, "get nodes")["items"]:
        cidr = node["spec"].get("podCIDR")
        if host_vars["kube_cni"] == "flannel":
            assert cidr, f"{node['metadata']['name']} has no podCIDR"
        if cidr:
            assert ipaddress.ip_network(cidr).subnet_of(network), cidr


def test_private_interface_is_explicit(host: Any, host_vars: dict[str, Any]) -> None:
    if host_vars["kube_cni"] == "flannel":
        ds = kubectl_json(host, "-n kube-flannel get daemonset kube-flannel-ds")
        container = next(
            c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "kube-flannel"
        )
        assert "--iface=$(FLANNEL_NODE_IP)" in container["args"]
        config = kubectl_json(host, "-n kube-flannel get configmap kube-flannel-cfg")
        assert (
            json.loads(config["data"]["net-conf.json"])["Network"] == host_vars["kube_pod_subnet"]
        )
    else:
        install = kubectl_json(host, "get installation default")
        autodetect = install["spec"]["calicoNetwork"]["nodeAddressAutodetectionV4"]
        assert autodetect == {"cidrs": [host_vars["k8s_private_cidr"]]}
