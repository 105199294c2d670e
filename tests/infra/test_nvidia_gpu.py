"""nvidia_gpu: GPU nodes get driver, runtime and capacity; other gpu_nodes hosts stay untouched."""

from __future__ import annotations

from typing import Any

import pytest
from _infra import role_vars, skip_by_design

testinfra_hosts = ["ansible://gpu_nodes"]

FIND_GPU = (
    "for d in /sys/bus/pci/devices/*; do "
    '[ "$(cat $d/vendor)" = 0x10de ] && grep -q ^0x03 $d/class && basename $d; done; true'
)


def _has_gpu(host: Any) -> bool:
    return bool(host.run(FIND_GPU).stdout.strip())


def _require_gpu(host: Any) -> None:
    if not _has_gpu(host):
        pytest.skip(
            "LEFT TO A GPU MACHINE: no NVIDIA device on this host's PCI bus; with one, this "
            "checks nvidia-smi, the pinned toolkit, containerd's nvidia runtime and the node's "
            "nvidia.com/gpu capacity"
        )


def test_without_gpu_nothing_is_installed(host: Any) -> None:
    if _has_gpu(host):
        skip_by_design("this host has an NVIDIA GPU")
    v = role_vars(host, "nvidia_gpu")
    for package in [*v["nvidia_gpu_toolkit_packages"], "ubuntu-drivers-common"]:
        assert not host.package(package).is_installed, package
    assert not host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.list").exists
    assert not host.file("/etc/apt/keyrings/nvidia-container-toolkit.asc").exists
    assert not host.file(v["nvidia_gpu_containerd_dropin"]).exists


def test_driver_sees_the_gpus(host: Any) -> None:
    _require_gpu(host)
    out = host.run("nvidia-smi -L")
    assert out.rc == 0 and "GPU " in out.stdout


def test_toolkit_pinned(host: Any) -> None:
    _require_gpu(host)
    v = role_vars(host, "nvidia_gpu")
    for package in v["nvidia_gpu_toolkit_packages"]:
        assert host.package(package).version == v["nvidia_gpu_toolkit_version"], package


def test_containerd_has_the_nvidia_runtime(host: Any) -> None:
    _require_gpu(host)
    dump = host.run("containerd config dump").stdout
    assert "nvidia-container-runtime" in dump
    assert host.service("containerd").is_running


def test_node_offers_gpus(host: Any) -> None:
    _require_gpu(host)
    v = role_vars(host, "nvidia_gpu")
    kubeconfig = "/etc/kubernetes/kubelet.conf"
    if not host.file(kubeconfig).exists:
        pytest.skip("the node has not joined a cluster")
    name = v.get("nvidia_gpu_node_name", v["inventory_hostname"])
    out = host.run(
        f"kubectl --kubeconfig {kubeconfig} get node {name} "
        "-o jsonpath='{.status.capacity.nvidia\\.com/gpu}'"
    )
    assert out.rc == 0, out.stderr
    assert int(out.stdout.strip() or 0) > 0
