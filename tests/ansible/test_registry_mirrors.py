"""The containerd role's registry mirrors (tasks/registry.yml) on a systemd container.

containerd_registry_mirrors is applied, changed and emptied in turn: the hosts.toml directory
follows the variable (a registry dropped from it loses the hosts.toml the role wrote, and its
directory once empty), a hand-written hosts.toml is left alone, every second run changes
nothing, a check-mode run touches nothing, and a malformed entry stops the role in one line.
containerd itself reading these files is molecule/containerd's part (tests/infra).
"""

from __future__ import annotations

import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from _systemd_node import converge as systemd_converge
from _systemd_node import role_play, systemd_node

pytestmark = [pytest.mark.docker, pytest.mark.slow]
CERTS = "/etc/containerd/certs.d"
HAND_WRITTEN = 'server = "https://registry.example.com"\n'


@pytest.fixture
def node(require_docker: None, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with systemd_node("registry-mirrors", tmp_path) as name:
        # A registry configured by hand (e.g. a private one with its CA): not the role's.
        subprocess.run(
            ["docker", "exec", name, "sh", "-c",
             f"mkdir -p {CERTS}/registry.example.com"
             f" && printf '{HAND_WRITTEN}' > {CERTS}/registry.example.com/hosts.toml"],
            check=True, capture_output=True,
        )  # fmt: skip
        role_play(tmp_path, "containerd", "registry")
        yield name, tmp_path


def converge(tmp_path: Path, mirrors: object, *args: str) -> tuple[int, str, int]:
    return systemd_converge(tmp_path, *args, containerd_registry_mirrors=mirrors)


def tree(container: str) -> dict[str, str]:
    """Every file under certs.d (relative path -> content) and every directory (-> "/")."""
    listing = subprocess.run(
        ["docker", "exec", container, "sh", "-c",
         f"cd {CERTS} && find . -mindepth 1 -type d -printf '%P/\\n'"
         " && find . -type f -printf '%P\\n'"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    files = {}
    for path in listing:
        if path.endswith("/"):
            files[path.rstrip("/")] = "/"
        else:
            files[path] = subprocess.run(
                ["docker", "exec", container, "cat", f"{CERTS}/{path}"],
                capture_output=True, text=True, check=True,
            ).stdout
    return files


def hosts_of(files: dict[str, str], registry: str) -> dict[str, object]:
    return tomllib.loads(files[f"{registry}/hosts.toml"])


def test_hosts_toml_files_follow_the_variable(node: tuple[str, Path]) -> None:
    container, tmp_path = node
    first = {"docker.io": ["https://mirror.example:5000"],
             "quay.io": ["https://mirror.example:5001"]}
    rc, out, changed = converge(tmp_path, first)
    assert rc == 0, out[-3000:]
    assert changed > 0
    files = tree(container)
    assert sorted(files) == ["docker.io", "docker.io/hosts.toml", "quay.io", "quay.io/hosts.toml",
                             "registry.example.com", "registry.example.com/hosts.toml"]
    assert hosts_of(files, "docker.io") == {
        "server": "https://registry-1.docker.io",
        "host": {"https://mirror.example:5000": {"capabilities": ["pull", "resolve"]}},
    }
    assert hosts_of(files, "quay.io")["server"] == "https://quay.io"

    rc, out, changed = converge(tmp_path, first)
    assert (rc, changed) == (0, 0), out[-3000:]

    # quay.io dropped, a second docker.io mirror: first a dry run, which changes nothing.
    second = {"docker.io": ["https://mirror.example:5000", "http://192.0.2.10:5002"]}
    rc, out, changed = converge(tmp_path, second, "--check")
    assert rc == 0, out[-3000:]
    assert changed > 0
    assert tree(container) == files

    rc, out, changed = converge(tmp_path, second)
    assert rc == 0, out[-3000:]
    files = tree(container)
    assert sorted(files) == ["docker.io", "docker.io/hosts.toml",
                             "registry.example.com", "registry.example.com/hosts.toml"]
    assert list(hosts_of(files, "docker.io")["host"]) == second["docker.io"]  # in order
    assert files["registry.example.com/hosts.toml"] == HAND_WRITTEN

    rc, out, changed = converge(tmp_path, second)
    assert (rc, changed) == (0, 0), out[-3000:]

    # No mirror at all: only the hand-written registry is left.
    rc, out, changed = converge(tmp_path, {})
    assert rc == 0, out[-3000:]
    assert sorted(tree(container)) == ["registry.example.com", "registry.example.com/hosts.toml"]
    rc, out, changed = converge(tmp_path, {})
    assert (rc, changed) == (0, 0), out[-3000:]


@pytest.mark.parametrize(("mirrors", "shown"), [
    ({"docker.io": "https://mirror.example:5000"}, "docker.io: https://mirror.example:5000"),
    ({"docker.io": ["mirror.example:5000"]}, "docker.io: ['mirror.example:5000']"),
    ({"https://docker.io": ["https://m.example"]}, "https://docker.io: ['https://m.example']"),
])
def test_a_malformed_entry_stops_in_one_line(
    node: tuple[str, Path], mirrors: dict[str, object], shown: str
) -> None:
    container, tmp_path = node
    rc, out, _ = converge(tmp_path, mirrors)
    assert rc != 0
    assert f"containerd: containerd_registry_mirrors entry {shown} is not a registry host" in out, (
        out[-3000:])
    assert sorted(tree(container)) == ["registry.example.com", "registry.example.com/hosts.toml"]
