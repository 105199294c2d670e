"""common_apt_proxy: a node with no way out but a proxy installs the common role's packages
through it. The node sits on an internal Docker network (no route to the internet); the proxy
(tests/support/http_proxy.py, in a second container) is on that network and on Docker's default
bridge, as a venue's apt-cacher-ng on the instructor's machine would be."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _docker import docker
from _systemd_node import converge, role_play, systemd_node

from labctl.labs import REPO

pytestmark = [pytest.mark.docker, pytest.mark.slow]
PORT = 3142
PROXY_FILE = "/etc/apt/apt.conf.d/01-tf-k8s-proxy"


@pytest.fixture
def internal_network() -> Iterator[str]:
    name = f"apt-proxy-net-{os.getpid()}"
    docker("network", "create", "--internal", name)
    try:
        yield name
    finally:
        subprocess.run(["docker", "network", "rm", name], capture_output=True, check=False)


@pytest.fixture
def proxy(require_docker: None, internal_network: str) -> Iterator[tuple[str, str]]:
    """(container name, its URL on the internal network)."""
    name = f"apt-proxy-{os.getpid()}"
    script = REPO / "tests/support/http_proxy.py"
    docker("run", "-d", "--name", name, "-v", f"{script}:/http_proxy.py:ro",
           "local/debian-systemd:latest", "python3", "-u", "/http_proxy.py", str(PORT))
    try:
        docker("network", "connect", internal_network, name)
        address = docker("inspect", "-f", f"{{{{(index .NetworkSettings.Networks "
                         f"\"{internal_network}\").IPAddress}}}}", name).strip()
        yield name, f"http://{address}:{PORT}"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def test_packages_come_through_the_proxy_and_nothing_else(
    tmp_path: Path, internal_network: str, proxy: tuple[str, str]
) -> None:
    proxy_name, url = proxy
    with systemd_node("apt-proxied", tmp_path, docker_args=("--network", internal_network)) as node:
        # By address: a name lookup on the internal network takes 20 s to fail.
        archive = socket.gethostbyname("deb.debian.org")
        reach = subprocess.run(
            ["docker", "exec", node, "python3", "-c",
             f"import socket; socket.create_connection(('{archive}', 80), timeout=5)"],
            capture_output=True, text=True, check=False)
        assert reach.returncode != 0, "the node reaches Debian's archive without the proxy"
        role_play(tmp_path, "common", "packages")
        # The image's apt lists are empty but fresh: valid time 0 has the role update them.
        rc, out, _ = converge(tmp_path, common_apt_proxy=url, common_apt_cache_valid_time=0,
                              common_boot_apt_timeout=5)
        assert rc == 0, out[-3000:]
        assert docker("exec", node, "dpkg-query", "-W", "-f", "${Status}", "nfs-common") == (
            "install ok installed")
        assert f'Acquire::http::Proxy "{url}";' in docker("exec", node, "cat", PROXY_FILE)
        fetched = [line for line in docker("logs", proxy_name).splitlines()
                   if line.startswith("PROXY GET http://deb.debian.org/") and
                   line.endswith(" 200")]
        assert any(line.split()[2].endswith(".deb") for line in fetched), fetched[-5:]

        # No proxy set any more: the setting goes (the packages are in, the lists fresh).
        rc, out, _ = converge(tmp_path, common_boot_apt_timeout=5)
        assert rc == 0, out[-3000:]
        assert subprocess.run(["docker", "exec", node, "test", "-e", PROXY_FILE],
                              check=False).returncode == 1
