"""containerd: the runtime kubelet talks to, with systemd cgroups and the pinned sandbox image."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require_group

DEFAULTS = Path(__file__).resolve().parents[2] / "roles" / "containerd" / "defaults" / "main.yml"


@pytest.fixture(autouse=True)
def _k8s_node(host_vars: dict[str, Any]) -> None:
    require_group(host_vars, "k8s_cluster")


def containerd_version(host: Any) -> tuple[int, int]:
    out = host.check_output("containerd --version")
    match = re.search(r"\sv?(\d+)\.(\d+)\.\d+", out)
    assert match, f"cannot read a version from {out!r}"
    return int(match.group(1)), int(match.group(2))


def test_service_running_and_enabled(host: Any) -> None:
    service = host.service("containerd")
    assert service.is_running
    assert service.is_enabled


def test_daemon_answers(host: Any) -> None:
    out = host.run("ctr version")
    assert out.rc == 0, out.stderr
    assert "Server:" in out.stdout


def test_config_matches_the_installed_version(host: Any, host_vars: dict[str, Any]) -> None:
    major, _ = containerd_version(host)
    config = tomllib.loads(host.file("/etc/containerd/config.toml").content_string)
    plugins = config["plugins"]
    defaults = yaml.safe_load(DEFAULTS.read_text())
    minor = ".".join(str(host_vars["kube_version"]).split(".")[:2])
    tag = defaults["containerd_pause_versions"][minor]
    pause = f"{defaults['containerd_pause_registry']}/pause:{tag}"
    if major >= 2:
        assert config["version"] == 3
        runtime = plugins["io.containerd.cri.v1.runtime"]
        sandbox = plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"]
    else:
        assert config["version"] == 2
        runtime = plugins["io.containerd.grpc.v1.cri"]
        sandbox = runtime["sandbox_image"]
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is True
    assert sandbox == pause


def cni_bin_dirs(host: Any) -> list[str]:
    """The CNI plugin directories the installed containerd reads, in order."""
    config = tomllib.loads(host.file("/etc/containerd/config.toml").content_string)
    plugins = config["plugins"]
    cri = plugins.get("io.containerd.cri.v1.runtime") or plugins["io.containerd.grpc.v1.cri"]
    cni = cri["cni"]
    return list(cni.get("bin_dirs") or [cni["bin_dir"]])


def test_runc_and_cni_plugins_are_installed(host: Any) -> None:
    assert host.run("runc --version").rc == 0
    dirs = cni_bin_dirs(host)
    assert dirs[0] == "/opt/cni/bin", "flannel and Calico install into /opt/cni/bin"
    for plugin in ("bridge", "host-local", "loopback", "portmap"):
        found = [f"{d}/{plugin}" for d in dirs if host.file(f"{d}/{plugin}").exists]
        assert found, f"CNI plugin {plugin} is in none of {dirs}"
        assert host.run(f"test -x {found[0]}").rc == 0, f"{found[0]} is not executable"


def test_crictl_reaches_containerd(host: Any) -> None:
    if not host.exists("crictl"):
        pytest.skip("crictl (cri-tools, the kubernetes role) is not on this node yet")
    info = host.run("crictl info")
    assert info.rc == 0, info.stderr
    assert '"SystemdCgroup": true' in info.stdout
