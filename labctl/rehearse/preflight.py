"""Refuse, in one line each and before anything boots, a host that cannot run the rehearsal."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from labctl.rehearse.plan import VM_PROVIDERS, Cluster

# Headroom beyond the VMs' memory for the host itself (its OS, Vagrant, the labs' client).
HOST_RESERVE_MIB = 2048
# A VM's disk grows to about this much (box, images, etcd); the box cache is counted once.
DISK_PER_VM_GIB = 6
# Where the bring-up downloads from: boxes, packages, releases, images (roles/UPSTREAM.md).
SOURCES = (
    "https://vagrantcloud.com",
    "https://pkgs.k8s.io",
    "https://github.com",
    "https://registry.k8s.io/v2/",
    "https://registry-1.docker.io/v2/",
)


def run_ok(*argv: str) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=60, check=False).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def provider_problem(provider: str) -> str:
    if provider == "virtualbox" and not run_ok("VBoxManage", "--version"):
        return "VirtualBox is not installed or VBoxManage does not answer: install VirtualBox 7"
    if provider == "libvirt":
        if not Path("/dev/kvm").exists():
            return "no /dev/kvm: enable hardware virtualization (VT-x/AMD-V) or use a KVM host"
        if not run_ok("virsh", "--connect", "qemu:///system", "version"):
            return "libvirt does not answer (virsh -c qemu:///system version): install libvirt"
        if not run_ok("sh", "-c", "vagrant plugin list | grep -q vagrant-libvirt"):
            return "the vagrant-libvirt plugin is missing: vagrant plugin install vagrant-libvirt"
    if provider == "docker" and not run_ok("docker", "info"):
        return "Docker does not answer (docker info): start it (make docker)"
    if provider not in (*VM_PROVIDERS, "docker"):
        return f"provider {provider} is not one the rehearsal knows: virtualbox, libvirt, docker"
    return ""


def available_mib() -> int:
    """MemAvailable on Linux; elsewhere all physical memory (macOS has no cheap equivalent)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


def memory_problem(cluster: Cluster, available: int) -> str:
    need = cluster.memory_mib + HOST_RESERVE_MIB
    if cluster.provider in VM_PROVIDERS and available < need:
        return (
            f"{available} MiB of memory free, the cluster needs {need} MiB ({cluster.memory_mib} "
            f"for the VMs + {HOST_RESERVE_MIB} for this host): fewer workers or less memory "
            "per VM (./setup-vagrant -n 1 -m 3072)"
        )
    return ""


def disk_problem(cluster: Cluster, free_gib: float) -> str:
    need = DISK_PER_VM_GIB * len(cluster.nodes) if cluster.provider in VM_PROVIDERS else 1
    if free_gib < need:
        return (
            f"{free_gib:.1f} GiB free under {Path.home()}, the cluster needs {need} GiB: free some"
        )
    return ""


def internet_problem(cluster: Cluster, answers: Callable[[str], bool] | None = None) -> str:
    """Every source the bring-up downloads from answers (any HTTP status counts)."""
    if cluster.provider not in VM_PROVIDERS:
        return ""
    check = answers or reachable
    down = [url for url in SOURCES if not check(url)]
    if down:
        return f"no answer from {', '.join(down)}: the bring-up downloads from them (proxy?)"
    return ""


def reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10)
    except urllib.error.HTTPError:
        return True  # it answered
    except (urllib.error.URLError, OSError):
        return False
    return True


def problems(cluster: Cluster) -> list[str]:
    """Every reason this host cannot rehearse the cluster, one line each."""
    if shutil.which("vagrant") is None:
        return ["vagrant is not installed: see the README's cluster section"]
    free_gib = shutil.disk_usage(Path.home()).free / 2**30
    found = [
        provider_problem(cluster.provider),
        memory_problem(cluster, available_mib()),
        disk_problem(cluster, free_gib),
        internet_problem(cluster),
    ]
    return [problem for problem in found if problem]
