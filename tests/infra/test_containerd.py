"""containerd: the runtime kubelet talks to, with systemd cgroups and the pinned sandbox image."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from _infra import role_vars
from conftest import require_group

DEFAULTS = Path(__file__).resolve().parents[2] / "roles" / "containerd" / "defaults" / "main.yml"
# The first line after ansible_managed of every hosts.toml the role writes (roles/containerd/vars).
MARKER = "# Written by the containerd role from containerd_registry_mirrors"
DOCKER_IO = "https://registry-1.docker.io"


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


def test_registry_mirrors_are_hosts_toml_files(host: Any) -> None:
    """One hosts.toml per registry of containerd_registry_mirrors (containerd's docs/hosts.md
    layout), and none the role wrote for a registry no longer listed."""
    config = role_vars(host, "containerd")
    mirrors: dict[str, list[str]] = config["containerd_registry_mirrors"] or {}
    directory = config["containerd_registry_config_dir"]
    for registry, endpoints in mirrors.items():
        hosts = tomllib.loads(host.file(f"{directory}/{registry}/hosts.toml").content_string)
        if registry == "_default":
            assert "server" not in hosts
        else:
            server = DOCKER_IO if registry == "docker.io" else f"https://{registry}"
            assert hosts["server"] == server
        assert list(hosts["host"]) == endpoints, "mirrors in the listed order"
        for endpoint in endpoints:
            wanted = config["containerd_registry_mirror_capabilities"]
            assert hosts["host"][endpoint]["capabilities"] == wanted
    found = host.run(f"grep -rlxF --include=hosts.toml '{MARKER}' {directory}")
    written = {Path(p).parent.name for p in found.stdout.split()}
    assert written == set(mirrors), f"hosts.toml files the role wrote: {sorted(written)}"


def test_running_containerd_reads_the_registry_hosts(host: Any) -> None:
    """containerd's own parser takes the config (`config dump`), the daemon started after the
    config was last written (the handler restarted it) and is active."""
    config = role_vars(host, "containerd")
    major, _ = containerd_version(host)
    dump = host.run("containerd config dump")
    assert dump.rc == 0, dump.stderr
    plugins = tomllib.loads(dump.stdout)["plugins"]
    table = "io.containerd.cri.v1.images" if major >= 2 else "io.containerd.grpc.v1.cri"
    assert plugins[table]["registry"]["config_path"] == config["containerd_registry_config_dir"]
    assert host.service("containerd").is_running
    started = host.check_output("systemctl show containerd --property=ActiveEnterTimestamp --value")
    started_s = int(host.check_output(f"date -d '{started}' +%s"))
    written_s = int(host.check_output("stat -c %Y /etc/containerd/config.toml"))
    assert started_s >= written_s, "containerd runs with an older config.toml (no restart)"
    if major < 2:
        # containerd 1.x logs the CRI config it started with (2.x logs only the runtime's).
        invocation = host.check_output("systemctl show containerd --property=InvocationID --value")
        log = host.check_output(f"journalctl -o cat _SYSTEMD_INVOCATION_ID={invocation}")
        assert f"ConfigPath:{config['containerd_registry_config_dir']}" in log
