"""Playbooks and inventories: Ansible's own syntax check, the conventions of roles/README.md
(groups, stage tags, cluster-wide variables) checked on the parsed files, and reset.yml and
add-node.yml run for real. test_lint.py lints them with the rest of the repository."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from _venv import run

from labctl import versions

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yml"))
# site.yml's stages, in order; each is a playbook of that name and a tag of the same name.
STAGES = [
    "prepare",
    "etcd",
    "loadbalancer",
    "control-plane",
    "nodes",
    "network",
    "storage",
    "gpu",
    "addons",
]
GROUPS = {"kube_control_plane", "etcd", "kube_node", "k8s_cluster", "nfs_server", "gpu_nodes"}
SAMPLE = REPO / "inventory/sample"


def load(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text())


def plays() -> list[tuple[str, dict]]:
    """Every play of every playbook (imports excluded), with its file name."""
    return [
        (path.name, play)
        for path in PLAYBOOKS
        for play in load(path)
        if "ansible.builtin.import_playbook" not in play
    ]


def readme_table(heading: str) -> list[list[str]]:
    """Rows of the first table after `heading` in roles/README.md, cells without backticks."""
    text = (REPO / "roles/README.md").read_text().split(heading, 1)[1]
    rows = []
    for line in text.splitlines():
        if rows and not line.startswith("|"):
            break
        if line.startswith("| `"):
            rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows


def test_every_playbook_passes_the_syntax_check() -> None:
    done = run("ansible-playbook", "--syntax-check", "-i", SAMPLE, *PLAYBOOKS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_site_runs_every_stage_in_order() -> None:
    imports = [
        entry["ansible.builtin.import_playbook"] for entry in load(REPO / "playbooks/site.yml")
    ]
    assert imports == [f"{stage}.yml" for stage in STAGES]
    for stage in STAGES:
        # A stage's tag selects all of it: `--tags etcd` (K8S_ANSIBLE_TAGS=etcd) runs stage etcd.
        for play in load(REPO / f"playbooks/{stage}.yml"):
            assert stage in play["tags"] or "always" in play["tags"], (stage, play["name"])


@pytest.mark.parametrize("tag", ["common", "containerd", "etcd", "loadbalancer"])
def test_a_tag_selects_one_role(tag: str) -> None:
    """K8S_ANSIBLE_TAGS picks stages: a role's tag runs that role's tasks and nothing else
    (argument validation is tagged `always` by Ansible; so is the wait for the nodes)."""
    done = run(
        "ansible-playbook", "-i", SAMPLE, "--list-tasks", "--tags", tag,
        REPO / "playbooks/site.yml",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    tasks = re.findall(r"^ {6}(\S.*?)\tTAGS: \[(.*)\]$", done.stdout, flags=re.MULTILINE)
    selected = [name for name, tags in tasks if "always" not in tags.split(", ")]
    assert selected and all(name.startswith(f"{tag} : ") for name in selected), selected


def roles_in_order(playbook: str) -> list[str]:
    return [entry["role"] for play in load(REPO / "playbooks" / playbook)
            for entry in play.get("roles", [])]


@pytest.mark.parametrize(("playbook", "after"), [
    ("control-plane.yml", "control_plane"), ("nodes.yml", "node")])
def test_kubelet_serving_certificates_are_approved_where_nodes_join(
    playbook: str, after: str
) -> None:
    """Without an approved serving certificate `kubectl logs/exec` fail on a node: approval
    cannot wait for the last stage (add-node.yml imports nodes.yml)."""
    order = roles_in_order(playbook)
    assert order.index("kubelet_csr") > order.index(after), order
    assert "nodes.yml" in [e.get("ansible.builtin.import_playbook")
                           for e in load(REPO / "playbooks/add-node.yml")]


def test_addons_approve_renewals_before_metrics_server() -> None:
    order = roles_in_order("addons.yml")
    assert order.index("kubelet_csr") < order.index("metrics"), order


def test_plays_use_the_inventory_groups_and_known_roles() -> None:
    roles = {row[0] for row in readme_table("| role | concern | runs on |")}
    for name, play in plays():
        # A union of groups ("etcd:kube_control_plane") or one group, optionally one host of it.
        for pattern in play["hosts"].split(":"):
            assert re.sub(r"\[\d+\]$", "", pattern) in GROUPS | {"all"}, (name, play["hosts"])
        for entry in play.get("roles", []):
            # Each role's name is a tag of its play, as the stage's is: a play gathers facts only
            # under the play's own tags, so a role tag set on the role alone (`--tags common`)
            # would run the role without facts.
            assert entry["role"] in roles, (name, entry["role"])
            assert entry["role"] in play["tags"], (name, entry["role"])


def test_reset_reads_the_etcd_roles_own_defaults() -> None:
    (etcd_play, *_) = load(REPO / "playbooks/reset.yml")
    include = etcd_play["tasks"][0]["ansible.builtin.include_vars"]
    path = Path(include["file"].replace("{{ playbook_dir }}", str(REPO / "playbooks")))
    assert "etcd_data_dir" in yaml.safe_load(path.read_text())


# The sample inventory, as Ansible parses it -------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> dict:
    done = run("ansible-inventory", "-i", SAMPLE, "--list", "--export")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def members(inv: dict, name: str) -> list[str]:
    entry = inv.get(name, {})
    hosts = list(entry.get("hosts", []))
    for child in entry.get("children", []):
        hosts += members(inv, child)
    return hosts


def group_vars(inventory: Path = SAMPLE) -> dict:
    merged: dict = {}
    for path in sorted((inventory / "group_vars/all").glob("*.yml")):
        merged |= yaml.safe_load(path.read_text())
    return merged


def test_sample_has_every_group_and_an_odd_control_plane(sample: dict) -> None:
    for name in GROUPS:
        assert members(sample, name), name
    assert len(members(sample, "kube_control_plane")) % 2 == 1
    assert len(members(sample, "etcd")) % 2 == 1
    assert set(members(sample, "k8s_cluster")) == set(
        members(sample, "kube_control_plane") + members(sample, "kube_node")
    )
    assert set(members(sample, "gpu_nodes")) <= set(members(sample, "kube_node"))


def test_sample_addresses_are_consistent(sample: dict) -> None:
    variables = group_vars()
    private = ipaddress.ip_network(variables["k8s_private_cidr"])
    nodes = sample["_meta"]["hostvars"]
    addresses = [ipaddress.ip_address(host["k8s_node_ip"]) for host in nodes.values()]
    assert len(set(addresses)) == len(addresses)
    assert all(address in private for address in addresses)
    vip = ipaddress.ip_address(variables["kube_vip_address"])
    assert vip in private and vip not in addresses
    pods = ipaddress.ip_network(variables["kube_pod_subnet"])
    services = ipaddress.ip_network(variables["kube_service_subnet"])
    for a, b in [(private, pods), (private, services), (pods, services)]:
        assert not a.overlaps(b), (a, b)


def test_sample_defines_and_documents_every_cluster_wide_variable() -> None:
    wanted = {row[0] for row in readme_table("| variable | meaning | default |")}
    # k8s_node_ip is per host (hosts.yml), kube_version a pin (versions.yml); the rest are
    # group_vars.
    assert "kube_version" in versions.pins()
    assert wanted - {"k8s_node_ip", "kube_version"} <= set(group_vars())
    for path in sorted((SAMPLE / "group_vars/all").glob("*.yml")):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if re.match(r"^[a-z_]+:", line):
                assert lines[number - 1].startswith("#"), f"{path.name}: {line} is undocumented"


def test_sample_defaults_match_the_vagrant_defaults() -> None:
    """One default per setting: vagrant.yml's and the sample's must not drift apart, and the
    Kubernetes version is versions.yml's alone (the roles read it through roles/versions)."""
    cluster = load(REPO / "vagrant.yml")
    variables = group_vars()
    assert "kube_version" not in variables and "kube_version" not in cluster
    assert variables["kube_cni"] == cluster["cni"]
    assert variables["kube_pod_subnet"] == cluster["pod_subnet"]
    assert variables["kube_service_subnet"] == cluster["service_subnet"]
    for key, value in group_vars(REPO / "inventory/vagrant").items():
        if key in variables and not key.startswith("ansible_"):
            assert value == variables[key], key


@pytest.mark.parametrize("inventory", ["sample", "vagrant"])
def test_kubelet_serving_certificates_suit_metrics_server(inventory: str) -> None:
    """metrics-server verifies kubelets (bootstrap) only if they have CA-signed certificates."""
    variables = group_vars(REPO / "inventory" / inventory)
    default = load(REPO / "roles/metrics/defaults/main.yml")["metrics_kubelet_tls"]
    verified = variables.get("metrics_kubelet_tls", default) == "bootstrap"
    kubelet = variables.get("control_plane_kubelet_config", {})
    assert kubelet.get("serverTLSBootstrap", False) is verified


# reset.yml and add-node.yml, run for real on a systemd container ---------------------------


@pytest.fixture(scope="module")
def node(require_docker: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A never-built node (Debian 12 with systemd, no pulls) in every group; its inventory."""
    name = f"vagrant-playbooks-{os.getpid()}"
    started = subprocess.run(
        ["docker", "run", "-d", "--name", name, "--hostname", "k8s-cp-1", "--cgroupns=host",
         "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
         "local/debian-systemd:latest"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if started.returncode != 0:
        pytest.fail(f"cannot start {name} (make images builds it): {started.stderr.strip()}")
    directory = tmp_path_factory.mktemp("node")
    (directory / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        "k8s-cp-1": {
                            "ansible_connection": "community.docker.docker",
                            "ansible_host": name,
                            "ansible_python_interpreter": "/usr/bin/python3",
                            "k8s_node_ip": "192.168.56.11",
                            "control_plane_fetch_kubeconfig_to": str(directory / "kubeconfig"),
                            "reset_reboot": False,
                        }
                    },
                    "children": {
                        "kube_control_plane": {"hosts": {"k8s-cp-1": None}},
                        "etcd": {"hosts": {"k8s-cp-1": None}},
                        "kube_node": {"hosts": {}},
                        "k8s_cluster": {
                            "children": {"kube_control_plane": None, "kube_node": None}
                        },
                    },
                }
            }
        )
    )
    yield directory
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def playbook(inventory: Path, name: str) -> subprocess.CompletedProcess[str]:
    return run("ansible-playbook", "-i", inventory / "hosts.yml", REPO / "playbooks" / name)


def recap_changed(output: str) -> int:
    return sum(int(n) for n in re.findall(r"changed=(\d+)", output.split("PLAY RECAP", 1)[1]))


@pytest.mark.docker
@pytest.mark.slow
def test_reset_cleans_a_node_and_is_idempotent(node: Path) -> None:
    name = yaml.safe_load((node / "hosts.yml").read_text())["all"]["hosts"]["k8s-cp-1"]
    container = name["ansible_host"]
    # Leftovers of a cluster: CNI configuration and state, an admin kubeconfig, etcd data.
    subprocess.run(
        ["docker", "exec", container, "sh", "-c",
         "mkdir -p /etc/cni/net.d /var/lib/cni/networks /root/.kube /var/lib/etcd-cluster/member"
         " && touch /etc/cni/net.d/10-flannel.conflist /root/.kube/config"],
        check=True,
    )  # fmt: skip
    (node / "kubeconfig").write_text("apiVersion: v1\n")

    first = playbook(node, "reset.yml")
    assert first.returncode == 0, first.stdout + first.stderr
    left = subprocess.run(
        ["docker", "exec", container, "sh", "-c",
         "ls -A /etc/cni/net.d; ls -d /var/lib/cni /root/.kube /var/lib/etcd-cluster 2>/dev/null;"
         " test -d /etc/cni/net.d && echo kept"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert left.stdout.split() == ["kept"]
    assert not (node / "kubeconfig").exists()

    second = playbook(node, "reset.yml")
    assert second.returncode == 0, second.stdout + second.stderr
    assert recap_changed(second.stdout) == 0, second.stdout


@pytest.mark.docker
def test_add_node_refuses_without_a_running_cluster(node: Path) -> None:
    done = playbook(node, "add-node.yml")
    assert done.returncode != 0
    assert "No cluster on k8s-cp-1 (no /etc/kubernetes/admin.conf)" in done.stdout
    assert "build it with playbooks/site.yml first" in done.stdout
