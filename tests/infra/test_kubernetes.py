"""kubernetes: kubelet, kubeadm and kubectl pinned to kube_version and held, kubelet on the
private address."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import require_group

PACKAGES = ("kubelet", "kubeadm", "kubectl")


@pytest.fixture(autouse=True)
def _k8s_node(host_vars: dict[str, Any]) -> None:
    require_group(host_vars, "k8s_cluster")


@pytest.mark.parametrize("name", PACKAGES)
def test_package_pinned_and_held(host: Any, host_vars: dict[str, Any], name: str) -> None:
    package = host.package(name)
    assert package.is_installed
    assert package.version.startswith(f"{host_vars['kube_version']}-"), package.version
    status = host.check_output(f"dpkg-query --show --showformat='${{Status}}' {name}")
    assert status.startswith("hold "), f"{name} is not held: {status}"


def test_repository_is_the_minor_versions(host: Any, host_vars: dict[str, Any]) -> None:
    minor = ".".join(str(host_vars["kube_version"]).split(".")[:2])
    source = host.file("/etc/apt/sources.list.d/kubernetes.sources").content_string
    assert f"https://pkgs.k8s.io/core:/stable:/v{minor}/deb/" in source
    assert "Signed-By:" in source


def test_kubelet_uses_the_private_address(host: Any, host_vars: dict[str, Any]) -> None:
    default = host.file("/etc/default/kubelet").content_string
    assert f"--node-ip={host_vars['k8s_node_ip']}" in default
    assert host.service("kubelet").is_enabled
