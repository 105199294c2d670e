"""Render the cluster-services roles' templates through Ansible (playbooks/services.yml)."""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "services.yml"
NAT_ADDRESS = "10.0.2.15"  # VirtualBox's NAT address: facts offer it, no template may use it


@dataclass(frozen=True, eq=False)  # hashed by identity: render() caches per cluster
class Cluster:
    name: str
    control_plane: dict[str, str]  # name -> k8s_node_ip
    workers: dict[str, str]
    vip: str
    private_cidr: str = "192.168.56.0/24"

    @property
    def nodes(self) -> dict[str, str]:
        return {**self.control_plane, **self.workers}


SINGLE = Cluster("single", {"k8s-cp-1": "192.168.56.11"}, {}, vip="")
HA = Cluster(
    "ha",
    {f"k8s-cp-{i}": f"192.168.56.1{i}" for i in (1, 2, 3)},
    {"k8s-worker-1": "192.168.56.21", "k8s-gpu-1": "192.168.56.31"},
    vip="192.168.56.10",
)


@functools.cache
def render(cluster: Cluster) -> Path:
    """Write an inventory for `cluster`, render every template, return the output directory.

    Cached: both test modules read the same rendering of a cluster.
    """
    root = Path(tempfile.mkdtemp(prefix=f"services-{cluster.name}-"))
    atexit.register(shutil.rmtree, root, True)
    host = {
        n: {"k8s_node_ip": ip, "ansible_default_ipv4": {"address": NAT_ADDRESS}}
        for n, ip in cluster.nodes.items()
    }
    cp = {n: host[n] for n in cluster.control_plane}
    gpu = {n: host[n] for n in cluster.workers if "gpu" in n}
    inventory = {
        "all": {
            "vars": {
                "k8s_private_cidr": cluster.private_cidr,
                "kube_vip_address": cluster.vip,
                "kube_apiserver_port": 6443,
                "loadbalancer_port": 8443,
            },
            "children": {
                "kube_control_plane": {"hosts": cp},
                "etcd": {"hosts": cp},
                "kube_node": {"hosts": {n: host[n] for n in cluster.workers} or cp},
                "k8s_cluster": {"children": {"kube_control_plane": {}, "kube_node": {}}},
                "nfs_server": {"hosts": {next(iter(cp)): {}}},
                "gpu_nodes": {"hosts": gpu},
            },
        }
    }
    path = root / f"{cluster.name}.yml"
    path.write_text(yaml.safe_dump(inventory))
    out = root / f"{cluster.name}-out"
    done = subprocess.run(
        [
            *(str(REPO / ".venv/bin/ansible-playbook"), "-i", str(path), str(PLAYBOOK)),
            *("-e", json.dumps({"out_dir": str(out)})),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return out


def text(out: Path, host: str, name: str) -> str:
    return (out / host / name).read_text()


def docs(out: Path, host: str, name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text(out, host, name)) if d]


def env_file(out: Path, host: str, name: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text(out, host, name).splitlines() if "=" in line)
    return {k: v for k, v in pairs if not k.startswith("#")}
