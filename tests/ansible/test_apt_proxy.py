"""common_apt_proxy: a node with no way out but a proxy installs the common role's packages
through it. The node sits on an internal Docker network (no route to the internet); the proxy
(tests/support/http_proxy.py, in a second container) is on that network and on Docker's default
bridge, as a venue's apt-cacher-ng on the instructor's machine would be. Then the venue's day:
the cache that proxy kept is served by a proxy on the internal network alone, asking no origin,
to a second node."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def running_proxy(name: str, network: str, cache: Path, *mode: str,
                  bridge: bool = True) -> Iterator[str]:
    """A proxy container on `network` (and on the default bridge, the way out, when `bridge`)
    keeping its cache in `cache`; its URL on `network`."""
    script = REPO / "tests/support/http_proxy.py"
    cache.mkdir(exist_ok=True)  # ours, not dockerd's (root's)
    docker("run", "-d", "--name", name, *([] if bridge else ["--network", network]),
           "-v", f"{script}:/http_proxy.py:ro", "-v", f"{cache}:/cache",
           "local/debian-systemd:latest", "python3", "-u", "/http_proxy.py", str(PORT), "/cache",
           *mode)
    try:
        if bridge:
            docker("network", "connect", network, name)
        address = docker("inspect", "-f", f"{{{{(index .NetworkSettings.Networks "
                         f"\"{network}\").IPAddress}}}}", name).strip()
        yield f"http://{address}:{PORT}"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


@pytest.fixture
def proxy(require_docker: None, internal_network: str,
          tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(container name, its URL on the internal network): the venue's proxy, online."""
    name = f"apt-proxy-{os.getpid()}"
    with running_proxy(name, internal_network, tmp_path / "cache") as url:
        yield name, url


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


def test_a_warmed_cache_serves_the_next_node_offline(
    tmp_path: Path, internal_network: str, proxy: tuple[str, str]
) -> None:
    """The venue's day: the cache was warmed by one provisioning while online, then serves
    every other node with the venue offline (the proxy on the internal network alone, asking
    no origin: apt-cacher-ng's Offlinemode)."""
    _, url = proxy
    for name, cache_url in (("warming", url), ("offline", None)):
        directory = tmp_path / name
        directory.mkdir()
        with systemd_node(f"apt-{name}", directory,
                          docker_args=("--network", internal_network)) as node:
            role_play(directory, "common", "packages")
            if cache_url is None:  # the warmed cache, offline
                with running_proxy(f"apt-proxy-offline-{os.getpid()}", internal_network,
                                   tmp_path / "cache", "offline", bridge=False) as offline:
                    rc, out, _ = converge(directory, common_apt_proxy=offline,
                                          common_apt_cache_valid_time=0,
                                          common_boot_apt_timeout=5)
                    log = docker("logs", f"apt-proxy-offline-{os.getpid()}").splitlines()
            else:
                rc, out, _ = converge(directory, common_apt_proxy=cache_url,
                                      common_apt_cache_valid_time=0, common_boot_apt_timeout=5)
            assert rc == 0, out[-3000:]
            assert docker("exec", node, "dpkg-query", "-W", "-f", "${Status}",
                          "nfs-common") == "install ok installed"
    debs = [line for line in log if line.split()[2].endswith(".deb")]
    assert debs and all(line.endswith(" 200 cached") for line in debs), log[-5:]
