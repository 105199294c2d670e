"""The nvidia_gpu role's driver step on a systemd container, against stand-in Ubuntu packages.

The container's only apt source is a local repository of empty packages named like Ubuntu's:
`ubuntu-drivers-common` whose `ubuntu-drivers install --gpgpu nvidia:NNN-server` installs only
`nvidia-headless-no-dkms-NNN-server` (what the real tool selects for --gpgpu, and exits 0 whatever
apt did), and `nvidia-utils-NNN-server`, the one package that ships `nvidia-smi`. It proves the
role's logic (which packages, which guard, idempotence) against that packaging, not a driver.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _apt_repo import Deb, build_repo
from _systemd_node import converge as systemd_converge
from _systemd_node import role_play, systemd_node

pytestmark = [pytest.mark.docker, pytest.mark.slow]
BRANCH = "580"
UBUNTU_DRIVERS = """#!/bin/sh
# Stand-in for ubuntu-drivers: --gpgpu nvidia:NNN-server installs the headless driver only.
echo "$*" >> /var/log/ubuntu-drivers.calls
branch=$(echo "$*" | sed -n 's/.*nvidia:\\([0-9]*\\)-server.*/\\1/p')
apt-get install -y -q "nvidia-headless-no-dkms-$branch-server" >/dev/null 2>&1
exit 0
"""
NVIDIA_SMI = """#!/bin/sh
echo "GPU 0: Stand-in GPU (UUID: GPU-00000000-0000-0000-0000-000000000000)"
"""


def build_stand_ins(root: Path) -> Path:
    return build_repo(root / "repo", [
        Deb("ubuntu-drivers-common", files={"usr/bin/ubuntu-drivers": UBUNTU_DRIVERS}),
        Deb(f"nvidia-headless-no-dkms-{BRANCH}-server"),
        Deb(f"nvidia-utils-{BRANCH}-server", files={"usr/bin/nvidia-smi": NVIDIA_SMI}),
    ])


@pytest.fixture
def gpu_node(require_docker: None, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with systemd_node("gpu-driver", tmp_path, host="gpu-1") as name:
        subprocess.run(["docker", "cp", build_stand_ins(tmp_path), f"{name}:/srv/stand-in"],
                       check=True)
        subprocess.run(
            ["docker", "exec", name, "sh", "-c",
             "rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*"
             " && echo 'deb [trusted=yes] file:/srv/stand-in ./' > /etc/apt/sources.list"
             " && apt-get update -qq"],
            check=True, capture_output=True,
        )  # fmt: skip
        role_play(tmp_path, "nvidia_gpu", "driver")
        yield name, tmp_path


def converge(tmp_path: Path) -> tuple[int, str, int]:
    return systemd_converge(tmp_path, nvidia_gpu_driver_branch=BRANCH,
                            nvidia_gpu_reboot_for_driver=False)


def test_driver_step_installs_nvidia_smi_once(gpu_node: tuple[str, Path]) -> None:
    container, tmp_path = gpu_node
    rc, out, changed = converge(tmp_path)
    assert rc == 0, out[-3000:]
    assert changed > 0
    smi = subprocess.run(["docker", "exec", container, "nvidia-smi", "-L"],
                         capture_output=True, text=True, check=False)
    assert smi.returncode == 0 and smi.stdout.startswith("GPU 0:"), smi

    # Driver and nvidia-smi in place: no second ubuntu-drivers run, no change at all.
    rc, out, changed = converge(tmp_path)
    assert rc == 0, out[-3000:]
    assert changed == 0, out[-3000:]
    calls = subprocess.run(["docker", "exec", container, "cat", "/var/log/ubuntu-drivers.calls"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert calls == [f"install --gpgpu nvidia:{BRANCH}-server"]
