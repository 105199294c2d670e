"""make verify's server pod and probe scripts, run for real: busybox sh, httpd and wget (the
applets the pinned busybox image has) and python3 on loopback, parsed by _verdicts.probes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import _probes
import _verdicts as verdict
import pytest
from _prereqs import missing
from kubernetes_validate import utils as kv

from labctl import versions


@pytest.fixture(scope="module")
def busybox() -> str:
    path = shutil.which("busybox")
    if path is None:
        missing("busybox is not installed (make tools installs it: apt-get install -y busybox)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def applets(busybox: str, tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH holds only busybox applets, as in the pod."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for applet in ("sh", "wget", "httpd", "mkdir", "echo", "head", "grep", "timeout"):
        (bin_dir / applet).symlink_to(busybox)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}


@pytest.fixture
def server(applets: dict[str, str], tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """The DaemonSet's container command, serving node-a's name on a free port."""
    port = free_port()
    script = _probes.server_script(port).replace("/tmp/www", str(tmp_path / "www"))
    proc = subprocess.Popen(
        ["sh", "-c", script], env={**applets, "NODE": "node-a"}, stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield port, proc
    proc.kill()
    proc.wait()


def test_pod_probe_reports_every_target_for_the_verdict(
    applets: dict[str, str], server: tuple[int, subprocess.Popen[str]]
) -> None:
    port, _ = server
    dead = free_port()  # nothing listens: a refused connection
    servers = {"node-a": {"ip": "127.0.0.1"}}
    # No Go API server here: kubernetes:443 is pointed at the busybox server, which does not
    # answer "400 Bad Request", so that probe must fail while the others pass.
    calls = _probes.pod_calls(servers, f"127.0.0.1:{port}", f"127.0.0.1:{port}", port=port)
    calls += f"; p pod@node-b timeout 5 wget -q -O- http://127.0.0.1:{dead}/"
    done = subprocess.run(
        ["sh", "-c", _probes.PROBE + calls], env=applets, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    expected = {"node-a": {"pod@node-a": "node-a", "service": None, "pod@node-b": "node-b",
                           "kubernetes:443": None}}  # fmt: skip
    assert verdict.probes({"node-a": done.stdout}, expected) == [
        "node-a -> pod@node-b: failed (1)",
        "node-a -> kubernetes:443: failed (1)",
    ]


def test_host_probe_reports_every_pod(server: tuple[int, subprocess.Popen[str]]) -> None:
    port, _ = server
    servers = {"node-a": {"ip": "127.0.0.1"}, "node-b": {"ip": "127.0.0.1"}}
    targets = _probes.host_targets(servers, port).replace(f"node-b=http://127.0.0.1:{port}", (
        f"node-b=http://127.0.0.1:{free_port()}"))  # fmt: skip
    done = subprocess.run(
        ["sh", "-c", _probes.HOST_PROBE.replace("python3", sys.executable) + targets],
        capture_output=True, text=True, timeout=60, check=True, env={**os.environ},
    )  # fmt: skip
    expected = {"h": {"pod@node-a": "node-a", "pod@node-b": "node-b"}}
    assert verdict.probes({"h": done.stdout}, expected) == ["h -> pod@node-b: failed (1)"]


def test_server_logs_its_node(server: tuple[int, subprocess.Popen[str]]) -> None:
    _, proc = server
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "serving on node-a"


def test_server_objects_are_valid_for_the_pinned_kubernetes() -> None:
    minor = ".".join(versions.get("kube_version").split(".")[:2]) + ".0"
    image = versions.get("nfs_provisioner_smoke_image")
    for obj in _probes.server_objects("verify-1234", image):
        kv.validate(obj, minor, strict=True)


# False pass 6: the storage check bound a claim and never mounted it.
@pytest.mark.parametrize(("workers", "nodes"), [
    (["w1", "w2", "w3"], ["w1", "w2"]),
    (["w1"], ["w1", "cp1"]),
    ([], ["cp1", "cp2"]),
])  # fmt: skip
def test_storage_smoke_writes_and_reads_on_two_nodes(workers: list[str], nodes: list[str]) -> None:
    groups = {"kube_node": workers, "kube_control_plane": ["cp1", "cp2"]}
    image = versions.get("nfs_provisioner_smoke_image")
    claim, writer, reader = _probes.smoke_objects(groups, "verify-1234", image)
    minor = ".".join(versions.get("kube_version").split(".")[:2]) + ".0"
    for obj in (claim, writer, reader):
        kv.validate(obj, minor, strict=True)
        assert obj["metadata"]["namespace"] == "verify-1234"
    placed = [pod["spec"]["nodeSelector"]["kubernetes.io/hostname"] for pod in (writer, reader)]
    assert placed == nodes
    token = writer["spec"]["containers"][0]["command"][-1].split()[1]
    assert reader["spec"]["containers"][0]["command"][-1] == f"grep -qx {token} /data/smoke"
    assert "storageClassName" not in claim["spec"]
