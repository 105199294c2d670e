"""The real Vagrantfile booted end to end with Vagrant's docker provider.

Two clusters, one after the other, each in a copy of the project files in a temporary directory
(its own .vagrant state and inventory; no vagrant.local.yml, no K8S_* from the caller):

- the default 1 control plane + 2 workers, provisioned with the stages that need no download
  beyond Debian's mirror: common, containerd and etcd from Debian's packages, loadbalancer;
- 3 control planes + 1 worker, provisioned with only what differs there: etcd (three members)
  and the loadbalancer's VIP.

Each is brought up by the workshop rehearsal (`python -m labctl.rehearse --keep`, what `make
rehearse` runs): `vagrant up` on the docker provider (stages picked through K8S_ANSIBLE_TAGS), a
second `vagrant provision` that must change nothing, `make verify` (tests/infra) over the
generated inventory, the cluster labs recorded as skipped (no kubelet in containers), and its
go/no-go table. Then `vagrant destroy -f` must leave no container or network behind. The default
cluster also shows an online stage failing at once, offline. Without Docker, vagrant or the local
image the tests skip loudly; in CI (CI=true) that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from _docker import docker
from _prereqs import missing

from labctl.rehearse import plan as rehearsal_plan

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.prefix) / "bin"
PROJECT_FILES = ["Vagrantfile", "vagrant.yml", "versions.yml", "ansible.cfg"]
PROJECT_DIRS = ["playbooks", "inventory/vagrant/group_vars"]
IMAGE = "local/debian-sshd:latest"  # versions.yml's vagrant_boxes.docker
LABEL = "tf-k8s-workshop.project"  # the Vagrantfile's DOCKER_LABEL
# The sources CI can reach: Debian's packages instead of the upstream releases. Debian's
# containerd is 1.6, which Kubernetes supports up to 1.35 (the containerd role refuses newer).
# Its etcd is 3.4, too old for kube-apiserver (the etcd role refuses it unless told otherwise).
OFFLINE_VARS = {
    "containerd_install_method": "distro",
    "etcd_install_method": "distro",
    "etcd_min_version": "3.4.0",
}
OFFLINE_KUBE = {"K8S_VERSION": "1.35.0"}
RECAP = re.compile(
    r"^(?P<host>\S+)\s*: ok=\d+\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)
pytestmark = [pytest.mark.slow, pytest.mark.docker]


@dataclass(frozen=True)
class Config:
    name: str
    env: dict[str, str]  # K8S_* settings beyond vagrant.yml's defaults
    stages: tuple[str, ...]  # K8S_ANSIBLE_TAGS, and the testinfra --stages (plus `cluster`)
    proven: tuple[str, ...]  # tests/infra modules that must pass at least one check here
    nodes: dict[str, str]  # node name -> private address
    control_planes_with_vip: tuple[str, ...] = ()


CONFIGS = [
    Config(
        "default",
        {"K8S_SUBNET": "10.213.1.0/24", **OFFLINE_KUBE},
        ("common", "containerd", "etcd", "loadbalancer"),
        ("common", "containerd", "etcd", "cluster"),
        {"k8s-cp-1": "10.213.1.11", "k8s-worker-1": "10.213.1.21", "k8s-worker-2": "10.213.1.22"},
    ),
    Config(
        "ha",
        {
            "K8S_SUBNET": "10.213.2.0/24",
            "K8S_CONTROL_PLANES": "3",
            "K8S_WORKERS": "1",
            **OFFLINE_KUBE,
        },
        ("etcd", "loadbalancer"),
        ("etcd", "loadbalancer", "cluster"),
        {
            "k8s-cp-1": "10.213.2.11",
            "k8s-cp-2": "10.213.2.12",
            "k8s-cp-3": "10.213.2.13",
            "k8s-worker-1": "10.213.2.21",
        },
        ("k8s-cp-1", "k8s-cp-2", "k8s-cp-3"),
    ),
]


@pytest.fixture(scope="session")
def require_image(require_docker: None) -> None:
    probe = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False)
    if probe.returncode != 0:
        missing(f"no local image {IMAGE} (make images builds it)")


def make_project(root: Path) -> Path:
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, root / name)
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, root / name)
    (root / "roles").symlink_to(REPO / "roles")
    (root / "inventory/vagrant/group_vars/all/offline.yml").write_text(yaml.safe_dump(OFFLINE_VARS))
    return root


@dataclass
class Cluster:
    config: Config
    project: Path
    env: dict[str, str]
    rehearsal: Path | None = None  # the rehearsal's directory (table, logs), once it ran

    def table(self) -> dict[str, Any]:
        assert self.rehearsal is not None
        return dict(json.loads((self.rehearsal / "report.json").read_text()))

    def log(self, step: str) -> str:
        """The output of one of the rehearsal's steps."""
        assert self.rehearsal is not None
        (found,) = [s for s in self.table()["steps"] if s["name"] == step]
        return (self.rehearsal / found["log"]).read_text()

    @property
    def junit(self) -> Path:
        """Where the rehearsal's `make verify` wrote its JUnit report (PYTEST_ADDOPTS)."""
        return self.project / "infra.xml"

    @property
    def inventory(self) -> Path:
        return self.project / "inventory/vagrant"

    @property
    def network(self) -> str:
        return f"vagrant_network_{self.config.env['K8S_SUBNET']}"

    def vagrant(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["vagrant", "--no-color", *args],
            cwd=self.project,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )

    def containers(self) -> list[dict[str, Any]]:
        ids = docker("ps", "-aq", "--filter", f"label={LABEL}={self.project}").split()
        return json.loads(docker("inspect", *ids)) if ids else []

    def networks(self) -> list[str]:
        named = docker("network", "ls", "--format", "{{.Name}}").split()
        labelled = docker(
            "network", "ls", "--filter", f"label={LABEL}={self.project}", "--format", "{{.Name}}"
        ).split()
        return sorted({n for n in named if n == self.network} | set(labelled))


def vagrant_env(config: Config) -> dict[str, str]:
    """The caller's environment without cluster or Vagrant settings, plus the config's."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("K8S_", "VAGRANT_", "ANSIBLE_"))
    }
    return {
        **env,
        "PATH": f"{BIN}:{env['PATH']}",
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "K8S_ANSIBLE_TAGS": ",".join(config.stages),
        **config.env,
    }


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP of the last ansible-playbook run in `output`: host -> counters."""
    found = {
        m["host"]: {k: int(m[k]) for k in ("changed", "unreachable", "failed")}
        for m in RECAP.finditer(output.rsplit("PLAY RECAP", 1)[-1])
    }
    assert found, output[-4000:]
    return found


def tail(done: subprocess.CompletedProcess[str]) -> str:
    return (done.stdout + done.stderr)[-6000:]


@pytest.fixture(scope="module", params=CONFIGS, ids=[c.name for c in CONFIGS])
def cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    vagrant: str,
    require_image: None,
) -> Iterator[Cluster]:
    """A booted and provisioned cluster; destroyed afterwards, whatever happened."""
    config: Config = request.param
    made = Cluster(
        config, make_project(tmp_path_factory.mktemp(f"docker-{config.name}")), vagrant_env(config)
    )
    try:
        out = made.project / "rehearsal"
        done = subprocess.run(
            [str(BIN / "python"), "-m", "labctl.rehearse", "--project", str(made.project),
             "--keep", "--out", str(out)],
            cwd=REPO, env={**made.env, "K8S_PROVIDER": "docker",
                           "PYTEST_ADDOPTS": f"--junitxml={made.junit} -p no:cacheprovider"},
            capture_output=True, text=True, timeout=2400, check=False,
        )  # fmt: skip
        runs = sorted(out.iterdir()) if out.is_dir() else []
        if done.returncode != 0 or len(runs) != 1:
            pytest.fail(f"the rehearsal said no-go:\n{tail(done)}")
        made.rehearsal = runs[0]
        yield made
    finally:
        made.vagrant("destroy", "-f")
        # Ours only (labelled with this project): nothing outlives the test, even a failed one.
        leftover = [c["Id"] for c in made.containers()]
        if leftover:
            docker("rm", "-f", *leftover)


def test_rehearsal_table_says_go_with_the_labs_skipped(cluster: Cluster) -> None:
    table = cluster.table()
    assert table["verdict"] == "GO"
    assert table["cluster"]["provider"] == "docker"
    steps = {s["name"]: (s["status"], s["reason"]) for s in table["steps"]}
    assert {k: v[0] for k, v in steps.items() if v[0] == "passed"} == dict.fromkeys(
        ["vagrant up", "re-provision changes nothing", "make verify"], "passed"
    )
    # Every step of the labs stage (the labs, the recovery run, the classroom) is in the table,
    # each skipped for the same reason.
    planned = rehearsal_plan.steps(
        rehearsal_plan.Cluster("docker", (), 0), REPO, keep=True, disruptive=False, labctl="labctl"
    )
    labs = {s["name"]: (s["status"], s["reason"]) for s in table["steps"] if s["stage"] == "labs"}
    assert sorted(labs) == sorted(s.name for s in planned if s.stage == "labs"), labs
    assert all(
        status == "skipped" and "the docker provider runs no kubelet" in reason
        for status, reason in labs.values()
    ), labs
    assert steps["vagrant destroy"] == ("skipped", "KEEP=1: the cluster stays up")
    # Ansible's per-task timestamps give each play's bring-up time; both clusters run etcd's
    # (the plays their tags leave out take next to nothing).
    plays = {p["play"]: p["seconds"] for p in table["bring_up"]}
    assert plays.get("Run the external etcd cluster", 0) > 1, plays
    assert all(t >= 0 for t in plays.values()), plays
    assert cluster.rehearsal is not None
    markdown = (cluster.rehearsal / "report.md").read_text()
    assert (
        markdown.startswith("# Rehearsal: GO") and "| cluster | make verify | passed |" in markdown
    )


def test_up_boots_every_node_and_provisions_it(cluster: Cluster) -> None:
    config, up = cluster.config, cluster.log("vagrant up")
    # Every node provisioned, none failed; the plan names the tags it ran with.
    assert f"Ansible tags: {','.join(config.stages)}" in up
    assert {h: (r["unreachable"], r["failed"]) for h, r in recap(up).items()} == (
        dict.fromkeys(config.nodes, (0, 0))
    )
    containers = {c["Config"]["Hostname"]: c for c in cluster.containers()}
    assert set(containers) == set(config.nodes)
    for name, container in containers.items():
        host = container["HostConfig"]
        assert container["State"]["Running"]
        assert container["Config"]["Image"] == IMAGE
        assert host["Privileged"] is False
        # Only what the offline stages need: chrony's SYS_TIME, keepalived's NET_ADMIN.
        caps = {c.removeprefix("CAP_") for c in host["CapAdd"] or []}
        vip = name in config.control_planes_with_vip
        assert caps == ({"SYS_TIME", "NET_ADMIN"} if vip else {"SYS_TIME"}), name
        assert host["Sysctls"]["net.ipv4.ip_forward"] == "1"
        assert ("net.ipv4.ip_nonlocal_bind" in host["Sysctls"]) == vip
        # The node's fixed private address, on the network made from the config's subnet.
        private = container["NetworkSettings"]["Networks"][cluster.network]
        assert private["IPAMConfig"]["IPv4Address"] == config.nodes[name]
    hosts = yaml.safe_load((cluster.inventory / "hosts.yml").read_text())["all"]["hosts"]
    assert {n: h["k8s_node_ip"] for n, h in hosts.items()} == config.nodes
    assert all("/docker/private_key" in h["ansible_ssh_private_key_file"] for h in hosts.values())


def test_second_provision_changes_nothing(cluster: Cluster) -> None:
    again = cluster.log("re-provision changes nothing")
    changed = {h: r["changed"] for h, r in recap(again).items()}
    assert changed == dict.fromkeys(cluster.config.nodes, 0), again[-4000:]


def test_infra_suite_passes_on_the_machines(cluster: Cluster) -> None:
    """tests/infra over the generated inventory: the rehearsal's `make verify`."""
    verify = cluster.log("make verify")
    stages = ",".join((*cluster.config.stages, "cluster"))
    assert f"--stages {stages}" in verify, verify[:2000]
    report = cluster.junit
    outcomes = infra_outcomes(report)
    for stage in cluster.config.proven:
        assert "passed" in outcomes.get(f"test_{stage}", {}).values(), (stage, outcomes)
    # From the whole-cluster checks, only etcd's can run without a kubelet; the others say why.
    cluster_checks = outcomes["test_cluster"]
    assert cluster_checks.pop("test_etcd_healthy_with_tls") == "passed"
    assert all(o.startswith("skipped: needs stage(s) ") for o in cluster_checks.values()), (
        cluster_checks
    )


def infra_outcomes(report: Path) -> dict[str, dict[str, str]]:
    """module -> test name (without host) -> passed / failed / 'skipped: <reason>'."""
    found: dict[str, dict[str, str]] = {}
    for case in ET.parse(report).iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = str(case.get("name")).split("[", 1)[0]
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif skipped is not None:
            outcome = f"skipped: {skipped.get('message')}"
        else:
            outcome = "passed"
        # A check passed on one host and skipped on another counts as passed.
        if found.setdefault(module, {}).get(name) != "passed":
            found[module][name] = outcome
    return found


def test_online_stage_fails_at_once_offline(cluster: Cluster) -> None:
    """The kubernetes stage needs pkgs.k8s.io, which CI cannot resolve: it must stop at its
    probe with one line naming the source, before apt or anything else is tried."""
    if cluster.config.name != "default":
        pytest.skip("shown once, on the default cluster")
    done = cluster.vagrant(
        "provision", K8S_ANSIBLE_TAGS="kubernetes", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json"
    )
    assert done.returncode != 0
    result = json.loads(done.stdout[done.stdout.index("\n{\n") : done.stdout.rindex("\n}\n") + 2])
    failed = {
        (task["task"]["name"], str(outcome.get("msg")))
        for play in result["plays"]
        for task in play["tasks"]
        for outcome in task["hosts"].values()
        if outcome.get("failed")
    }
    ((task, message),) = failed  # one task, one message, on every node
    assert task == "kubernetes : Fail early when the repository is unreachable"
    minor = ".".join(OFFLINE_KUBE["K8S_VERSION"].split(".")[:2])
    assert message.startswith(
        f"kubernetes: cannot reach https://pkgs.k8s.io/core:/stable:/v{minor}/deb/Release.key"
    ), message
    assert "\n" not in message.strip()
    stats = result["stats"]
    assert {h: (s["failures"], s["changed"]) for h, s in stats.items()} == {
        "k8s-cp-1": (1, 0), "k8s-worker-1": (1, 0), "k8s-worker-2": (1, 0),
    }  # fmt: skip


def test_destroy_leaves_no_container_or_network(cluster: Cluster) -> None:
    assert cluster.containers() and cluster.networks() == [cluster.network]
    done = cluster.vagrant("destroy", "-f")
    assert done.returncode == 0, tail(done)
    assert cluster.containers() == []
    assert cluster.networks() == []
