"""Bad input and unreachable sources stop the core roles at once, with one line naming the fix.

Each case runs a role's real tasks on this machine (connection local, check mode, so nothing is
changed even if a check passed) from an inventory written for it; the cases run concurrently.
Download sources are pointed at a closed local port, so the result does not depend on whether
this machine is online.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from _venv import REPO, run

from labctl import versions

PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "failures.yml"
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused
# Each case runs ansible-playbook with full facts: seconds each, even concurrently.
pytestmark = pytest.mark.slow

KUBE = versions.get("kube_version")
KUBE_MINOR = ".".join(KUBE.split(".")[:2])
CONTAINERD = versions.get("containerd_release_version")
# The cluster-wide variables these roles read (inventory/*/group_vars/all); etcd's client files
# come from the sample inventory itself.
ETCD_VARS = yaml.safe_load((REPO / "inventory/sample/group_vars/all/etcd.yml").read_text())
CLUSTER = {"kube_version": KUBE, "kube_cni": "flannel", "kube_pod_subnet": "10.244.0.0/16",
           **{k: v for k, v in ETCD_VARS.items() if k.startswith("etcd_external_")}}


@dataclass(frozen=True)
class Case:
    role: str
    tasks: str
    hosts: dict[str, dict[str, Any]]  # inventory name -> host vars
    expect: str  # the failure line, or "" when the case must pass
    extra: dict[str, Any] = field(default_factory=dict)


def preflight(expect: str, *ips: str | None, cidr: str = "127.0.0.0/8", **extra: Any) -> Case:
    hosts = {f"node-{i}": ({"k8s_node_ip": ip} if ip else {}) for i, ip in enumerate(ips, 1)}
    return Case("common", "preflight", hosts, expect, {"k8s_private_cidr": cidr, **extra})


CASES = {
    "preflight passes": preflight("", "127.0.0.1"),
    "address outside the private network": preflight(
        "common: k8s_node_ip 10.0.2.15 of node-1 is outside k8s_private_cidr 192.168.56.0/24;"
        " fix one of the two",
        "10.0.2.15",
        cidr="192.168.56.0/24",
    ),
    "no interface holds the address": preflight(
        "common: no interface on node-1 holds k8s_node_ip 127.0.0.77", "127.0.0.77"
    ),
    "two nodes, one address": preflight(
        "common: k8s_node_ip 127.0.0.1 is used by more than one node;"
        " give every node its own address",
        "127.0.0.1",
        "127.0.0.1",
    ),
    "a node without an address": preflight(
        "common: no k8s_node_ip for node-2; set it in the inventory", "127.0.0.1", None
    ),
    "unsupported distribution": preflight(
        "is not supported; use Debian 12, Ubuntu 22.04 or Ubuntu 24.04",
        "127.0.0.1",
        common_supported_releases={"Ubuntu": ["noble"]},
    ),
    "too little memory": preflight(
        "MiB; give the node more memory", "127.0.0.1", common_min_memory_mb_control_plane=10**9
    ),
    "pkgs.k8s.io unreachable": Case(
        "kubernetes",
        "main",
        {"node-1": {"k8s_node_ip": "127.0.0.1"}},
        f"kubernetes: cannot reach {CLOSED}/v{KUBE_MINOR}/deb/Release.key",
        {"kubernetes_apt_base_url": CLOSED},
    ),
    "containerd releases unreachable": Case(
        "containerd",
        "main",
        {"node-1": {}},
        f"containerd: cannot reach {CLOSED}/v{CONTAINERD}/containerd-{CONTAINERD}-linux-",
        {"containerd_release_base_url": CLOSED, "containerd_install_method": "release"},
    ),
    # This machine's containerd (Debian 12) is 1.6: too old for the pinned Kubernetes.
    "distro containerd too old for the Kubernetes version": Case(
        "containerd",
        "distro",
        {"node-1": {}},
        f"containerd: Kubernetes {KUBE} needs containerd 2.x, but the distribution's is 1.",
        {"containerd_install_method": "distro"},
    ),
    "distro containerd for Kubernetes 1.35": Case(
        "containerd",
        "distro",
        {"node-1": {}},
        "",
        {"containerd_install_method": "distro", "kube_version": "1.35.0"},
    ),
    # This machine's etcd-server (Debian 12) is 3.4; kubeadm needs 3.5.24 or newer.
    "distro etcd too old for kube-apiserver": Case(
        "etcd",
        "main",
        {"node-1": {"k8s_node_ip": "127.0.0.1"}},
        "etcd: kubeadm needs external etcd 3.5.24 or newer, but the distribution's is 3.4.",
        {"etcd_install_method": "distro", "etcd_group": "kube_control_plane"},
    ),
    "etcd release without a checksum for this architecture": Case(
        "etcd",
        "main",
        {"node-1": {"k8s_node_ip": "127.0.0.1"}},
        "a checksum for linux-amd64 in etcd_release_sha256 (it has arm64)",
        {"etcd_release_sha256": {"arm64": "0" * 64}, "etcd_group": "kube_control_plane"},
    ),
    "containerd releases from a mirror that is no URL": Case(
        "containerd",
        "main",
        {"node-1": {}},
        "kit_mirror_url '192.168.56.1:8000' is not an http(s) URL; set it to the address",
        {"kit_mirror_url": "192.168.56.1:8000", "containerd_install_method": "release"},
    ),
    "apt proxy that is no URL": Case(
        "common",
        "packages",
        {"node-1": {}},
        "common: common_apt_proxy 192.168.56.1:3142 is not a proxy URL such as",
        {"common_apt_proxy": "192.168.56.1:3142"},
    ),
    "CNI manifest unreachable": Case(
        "cni",
        "main",
        {"node-1": {}},
        f"cni: cannot fetch {CLOSED}/kube-flannel.yml",
        {"cni_flannel_manifest_url": f"{CLOSED}/kube-flannel.yml", "k8s_private_cidr": "x"},
    ),
}


@dataclass
class Outcome:
    returncode: int
    failures: list[str]  # every failed task's message, across hosts
    failed_tasks: list[str]  # and the names of those tasks
    output: str


def run_case(case: Case, root: Path) -> Outcome:
    root.mkdir(parents=True)
    hosts = {name: {"ansible_connection": "local", **v} for name, v in case.hosts.items()}
    inventory = {
        "all": {
            "vars": {**CLUSTER, "role_name_under_test": case.role, "role_tasks": case.tasks},
            "children": {"kube_control_plane": {"hosts": hosts}},
        }
    }
    (root / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (root / "extra.json").write_text(json.dumps(case.extra))
    done = run(
        "ansible-playbook",
        *("--check", "-i", root / "hosts.yml", "-e", f"@{root / 'extra.json'}", PLAYBOOK),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
    )
    failed = [
        (task["task"]["name"], str(result.get("msg", "")))
        for play in json.loads(done.stdout)["plays"]
        for task in play["tasks"]
        for result in task["hosts"].values()
        if result.get("failed")
    ]
    return Outcome(
        done.returncode,
        [message for _, message in failed],
        [name for name, _ in failed],
        done.stdout[-3000:] + done.stderr[-2000:],
    )


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    root = tmp_path_factory.mktemp("failures")
    with ThreadPoolExecutor(max_workers=len(CASES)) as pool:
        futures = {
            name: pool.submit(run_case, case, root / f"case-{i}")
            for i, (name, case) in enumerate(CASES.items())
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_case(outcomes: dict[str, Outcome], name: str) -> None:
    case, outcome = CASES[name], outcomes[name]
    if not case.expect:
        assert outcome.returncode == 0, outcome.output
        assert outcome.failures == []
        return
    assert outcome.returncode != 0, outcome.output
    assert len(set(outcome.failures)) == 1, f"expected one failure, got {outcome.failures}"
    message = outcome.failures[0]
    assert case.expect in message, outcome.output
    assert "\n" not in message.strip(), "the failure must be one line"
    assert "Traceback" not in outcome.output


@pytest.mark.parametrize(
    "name",
    ["pkgs.k8s.io unreachable", "containerd releases unreachable", "CNI manifest unreachable"],
)
def test_unreachable_source_stops_the_stage_at_its_probe(
    outcomes: dict[str, Outcome], name: str
) -> None:
    # The reachability probe (bounded by the role's timeout) is the stage's first download:
    # nothing else was tried, so no apt or download timeout can follow.
    assert outcomes[name].failed_tasks == [outcomes[name].failed_tasks[0]]
    assert outcomes[name].failed_tasks[0].split(" : ", 1)[-1].startswith("Fail early when")
