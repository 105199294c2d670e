"""node: workers joined with kubelet on the private address and systemd cgroups."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import require_group


@pytest.fixture(autouse=True)
def _worker(host_vars: dict[str, Any]) -> None:
    require_group(host_vars, "kube_node")


def test_joined_and_kubelet_running(host: Any) -> None:
    assert host.file("/etc/kubernetes/kubelet.conf").exists
    kubelet = host.service("kubelet")
    assert kubelet.is_running
    assert kubelet.is_enabled


def test_kubelet_registers_the_private_address(host: Any, host_vars: dict[str, Any]) -> None:
    flags = host.file("/var/lib/kubelet/kubeadm-flags.env").content_string
    assert f"--node-ip={host_vars['k8s_node_ip']}" in flags


def test_kubelet_uses_systemd_cgroups(host: Any) -> None:
    assert "cgroupDriver: systemd" in host.file("/var/lib/kubelet/config.yaml").content_string


def test_no_join_credentials_left_behind(host: Any) -> None:
    assert not host.file("/etc/kubernetes/kubeadm-join.yaml").exists
