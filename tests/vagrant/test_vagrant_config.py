"""The Vagrantfile and setup-vagrant, driven through Debian's real vagrant without booting a VM.

`vagrant validate --ignore-provider` loads the Vagrantfile exactly as `vagrant up` does: the
settings are merged and checked, the inventory is written and every machine is configured.
Each test works on a copy of the project files in a temporary directory, so that a cluster
running from the checkout keeps its inventory.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from _prereqs import missing
from _venv import run

from labctl import versions

REPO = Path(__file__).resolve().parents[2]
PROJECT_FILES = ["Vagrantfile", "vagrant.yml", "versions.yml", "setup-vagrant", "ansible.cfg"]
PROJECT_DIRS = ["playbooks", "inventory/vagrant/group_vars"]
NAT_ADDRESS = "10.0.2.15"  # VirtualBox's NAT address: never a node address


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, tmp_path / name)
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, tmp_path / name)
    return tmp_path


def clean_env(**overrides: str) -> dict[str, str]:
    """The caller's environment without cluster settings, plus `overrides`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("K8S_") and key != "VAGRANT_DEFAULT_PROVIDER"
    }
    env["VAGRANT_CHECKPOINT_DISABLE"] = "1"
    env.update(overrides)
    return env


def in_project(project: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `command` in the project copy with only the given cluster settings."""
    return subprocess.run(
        command,
        cwd=project,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def run_vagrant(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return in_project(project, "vagrant", *args, **env)


def validate(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_vagrant(project, "validate", "--ignore-provider", **env)


def inventory(project: Path) -> dict:
    return yaml.safe_load((project / "inventory/vagrant/hosts.yml").read_text())


def group(inv: dict, name: str) -> list[str]:
    return list((inv["all"]["children"][name].get("hosts") or {}).keys())


def assert_one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Non-zero exit, exactly one line on stderr naming the problem, no Ruby backtrace."""
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("cluster config: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    assert ".rb:" not in done.stderr and "Traceback" not in done.stderr


def test_default_config_validates_and_writes_the_inventory(vagrant: str, project: Path) -> None:
    done = validate(project)
    assert done.returncode == 0, done.stderr
    # Ruby warnings (a constant defined twice when Vagrant reloads the file) would show here.
    assert done.stderr == ""
    assert "Vagrantfile validated successfully." in done.stdout
    assert "1 control plane + 2 workers = 3 VMs on virtualbox" in done.stdout
    assert "in total 6 vCPUs and 12288 MiB" in done.stdout
    assert done.stdout.count("Cluster: ") == 1  # the plan is shown once

    inv = inventory(project)
    hosts = inv["all"]["hosts"]
    assert list(hosts) == ["k8s-cp-1", "k8s-worker-1", "k8s-worker-2"]
    assert group(inv, "kube_control_plane") == ["k8s-cp-1"]
    assert group(inv, "etcd") == ["k8s-cp-1"]
    assert group(inv, "kube_node") == ["k8s-worker-1", "k8s-worker-2"]
    assert set(inv["all"]["children"]["k8s_cluster"]["children"]) == {
        "kube_control_plane",
        "kube_node",
    }
    assert group(inv, "nfs_server") == ["k8s-cp-1"]
    assert group(inv, "gpu_nodes") == []

    cluster = inv["all"]["vars"]
    subnet = ipaddress.ip_network(cluster["k8s_private_cidr"])
    assert str(subnet) == "192.168.56.0/24"
    for name, host in hosts.items():
        # Ansible reaches each node on the address every component binds to.
        assert host["k8s_node_ip"] == host["ansible_host"] != NAT_ADDRESS
        assert ipaddress.ip_address(host["k8s_node_ip"]) in subnet
        key = Path(host["ansible_ssh_private_key_file"])
        assert key == project / ".vagrant/machines" / name / "virtualbox/private_key"
    assert [h["k8s_node_ip"] for h in hosts.values()] == [
        "192.168.56.11",
        "192.168.56.21",
        "192.168.56.22",
    ]
    assert cluster["kube_vip_address"] == ""
    assert cluster["kube_version"] == versions.get("kube_version")  # the pin is the default
    assert cluster["kube_cni"] == "flannel"
    assert cluster["kube_pod_subnet"] == "10.244.0.0/16"
    assert cluster["kube_service_subnet"] == "10.96.0.0/12"
    assert cluster["control_plane_fetch_kubeconfig_to"] == str(project / "kubeconfig")


def test_generated_inventory_gives_every_host_every_cluster_variable(
    vagrant: str, project: Path
) -> None:
    assert validate(project, K8S_CONTROL_PLANES="3").returncode == 0
    generated = set(inventory(project)["all"]["vars"])
    committed: set[str] = set()
    for path in (project / "inventory/vagrant/group_vars/all").glob("*.yml"):
        committed |= set(yaml.safe_load(path.read_text()))
    # group_vars/all outranks hosts.yml's all:vars: a value in both would silently ignore
    # vagrant.yml.
    assert not generated & committed
    readme = (REPO / "roles/README.md").read_text().split("## Cluster-wide variables", 1)[1]
    wanted = set(re.findall(r"^\| `([a-z0-9_]+)` \|", readme, flags=re.MULTILINE))
    assert "kube_vip_address" in wanted
    done = run("ansible-inventory", "-i", project / "inventory/vagrant", "--list")
    assert done.returncode == 0, done.stderr
    hostvars = json.loads(done.stdout)["_meta"]["hostvars"]
    assert len(hostvars) == 5
    for name, variables in hostvars.items():
        assert wanted <= set(variables), (name, wanted - set(variables))
        assert variables["kube_vip_address"] == "192.168.56.10"
        assert variables["ansible_user"] == "vagrant"


def test_large_config_validates_with_a_vip(vagrant: str, project: Path) -> None:
    done = validate(project, K8S_CONTROL_PLANES="3", K8S_WORKERS="5", K8S_CNI="calico")
    assert done.returncode == 0, done.stderr
    assert "3 control planes + 5 workers = 8 VMs" in done.stdout
    assert "API server VIP: 192.168.56.10" in done.stdout

    inv = inventory(project)
    assert group(inv, "kube_control_plane") == ["k8s-cp-1", "k8s-cp-2", "k8s-cp-3"]
    assert group(inv, "etcd") == group(inv, "kube_control_plane")
    assert group(inv, "kube_node") == [f"k8s-worker-{i}" for i in range(1, 6)]
    addresses = [host["k8s_node_ip"] for host in inv["all"]["hosts"].values()]
    vip = inv["all"]["vars"]["kube_vip_address"]
    assert vip == "192.168.56.10"
    assert len(set(addresses)) == 8 and vip not in addresses
    assert inv["all"]["vars"]["kube_cni"] == "calico"


def test_environment_beats_local_file_beats_defaults(vagrant: str, project: Path) -> None:
    (project / "vagrant.local.yml").write_text("workers: 3\nmemory: 3072\n")
    assert validate(project).returncode == 0
    assert len(group(inventory(project), "kube_node")) == 3
    done = validate(project, K8S_WORKERS="4")
    assert done.returncode == 0, done.stderr
    assert "1 control plane + 4 workers" in done.stdout
    assert "3072 MiB" in done.stdout  # the file's other setting still applies
    assert len(group(inventory(project), "kube_node")) == 4


def test_kube_version_defaults_to_the_pin_and_k8s_version_overrides_it(
    vagrant: str, project: Path
) -> None:
    pin = versions.get("kube_version")
    minor = int(pin.split(".")[1])
    other = f"1.{minor - 1}.0"
    done = validate(project, K8S_VERSION=other)
    assert done.returncode == 0, done.stderr
    assert inventory(project)["all"]["vars"]["kube_version"] == other
    assert f"Kubernetes {other}" in done.stdout
    (project / "versions.yml").write_text('kube_version: "1.99.0"\n')  # vagrant_boxes lost
    assert_one_line_error(
        validate(project), "versions.yml has no vagrant_boxes", "git checkout versions.yml"
    )


def test_the_old_local_settings_name_is_read_with_a_notice(vagrant: str, project: Path) -> None:
    (project / "cluster.local.yml").write_text("workers: 3\n")
    done = validate(project)
    assert done.returncode == 0, done.stderr
    assert len(group(inventory(project), "kube_node")) == 3
    assert "cluster.local.yml is now vagrant.local.yml" in done.stderr
    assert "mv cluster.local.yml vagrant.local.yml" in done.stderr
    (project / "vagrant.local.yml").write_text("workers: 1\n")
    assert_one_line_error(validate(project), "both cluster.local.yml and vagrant.local.yml exist")


def test_libvirt_provider_with_a_gpu_worker(vagrant: str, project: Path) -> None:
    done = validate(project, K8S_PROVIDER="libvirt", K8S_GPU_PCI="0000:01:00.0")
    assert done.returncode == 0, done.stderr
    assert "on libvirt" in done.stdout
    assert versions.pins()["vagrant_boxes"]["libvirt"]["box"] in done.stdout
    assert "worker, GPU 0000:01:00.0" in done.stdout
    inv = inventory(project)
    assert group(inv, "gpu_nodes") == ["k8s-worker-1"]
    key = inv["all"]["hosts"]["k8s-cp-1"]["ansible_ssh_private_key_file"]
    assert key.endswith("/k8s-cp-1/libvirt/private_key")


def test_ansible_tags_reach_the_plan(vagrant: str, project: Path) -> None:
    done = validate(project, K8S_ANSIBLE_TAGS="common, containerd,etcd")
    assert done.returncode == 0, done.stderr
    assert "Ansible tags: common,containerd,etcd" in done.stdout


def test_provider_precedence(vagrant: str, project: Path) -> None:
    (project / "vagrant.local.yml").write_text("provider: virtualbox\n")
    done = validate(project, VAGRANT_DEFAULT_PROVIDER="libvirt")
    assert "3 VMs on libvirt" in done.stdout, done.stderr
    done = validate(project, VAGRANT_DEFAULT_PROVIDER="libvirt", K8S_PROVIDER="virtualbox")
    assert "3 VMs on virtualbox" in done.stdout, done.stderr


def test_configured_provider_is_vagrants_default(vagrant: str, project: Path) -> None:
    done = run_vagrant(project, "status", K8S_PROVIDER="libvirt")
    assert done.returncode == 0, done.stderr
    assert "k8s-cp-1                  not created (libvirt)" in done.stdout


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ({"K8S_MEMORY": "1024"}, ["memory = 1024 MiB (from K8S_MEMORY)", "below the 2048 MiB"]),
        ({"K8S_CPUS": "1"}, ["cpus = 1", "below the 2 vCPUs"]),
        ({"K8S_WORKERS": "0"}, ["workers = 0 (from K8S_WORKERS)", "at least 1 worker"]),
        ({"K8S_CONTROL_PLANES": "2"}, ["control_planes = 2", "even", "quorum"]),
        ({"K8S_CONTROL_PLANES": "0"}, ["control_planes = 0", "between 1 and 9"]),
        ({"K8S_SUBNET": "10.10.0.0/24"}, ["outside VirtualBox's host-only range 192.168.56.0/21"]),
        ({"K8S_SUBNET": "192.168.64.0/24"}, ["outside VirtualBox's host-only range"]),
        ({"K8S_SUBNET": "192.168.48.0/20"}, ["outside VirtualBox's host-only range"]),
        ({"K8S_SUBNET": "192.168.56.5/24"}, ["has host bits set; use 192.168.56.0/24"]),
        ({"K8S_SUBNET": "not-a-net"}, ["subnet = not-a-net", "not an IPv4 network"]),
        ({"K8S_CNI": "weave"}, ['cni = "weave"', "unknown; use one of: flannel, calico"]),
        ({"K8S_PROVIDER": "vmware"}, ['provider = "vmware"', "use one of: virtualbox, libvirt"]),
        (
            {"K8S_SUBNET": "192.168.56.0/28", "K8S_WORKERS": "2"},
            ["holds addresses up to 192.168.56.14", "need up to 192.168.56.22"],
        ),
        (
            {"K8S_SUBNET": "192.168.56.0/27", "K8S_WORKERS": "11"},
            ["holds addresses up to 192.168.56.30", "11 workers need up to 192.168.56.31"],
        ),
        ({"K8S_WORKERS": "two"}, ['K8S_WORKERS="two" is not a whole number']),
        ({"K8S_VERSION": "1.37"}, ["not a full Kubernetes version"]),
        ({"K8S_VERSION": "1.29.4"}, ["older than 1.31", "v1beta4"]),
        ({"K8S_POD_SUBNET": "192.168.0.0/16"}, ["pod_subnet = 192.168.0.0/16", "overlaps subnet"]),
        ({"K8S_SERVICE_SUBNET": "10.244.0.0/20"}, ["pod_subnet 10.244.0.0/16 and service_subnet"]),
        ({"K8S_GPU_PCI": "0000:01:00.0"}, ["needs provider libvirt"]),
        (
            {"K8S_PROVIDER": "libvirt", "K8S_GPU_PCI": "0000:01:00.0,0000:02:00.0,0000:03:00.0"},
            ["lists 3 GPUs", "only 2 workers"],
        ),
        ({"K8S_PROVIDER": "libvirt", "K8S_GPU_PCI": "01:00.0"}, ["not a PCI address"]),
        (
            {"K8S_PROVIDER": "libvirt", "K8S_SUBNET": "192.168.121.0/24"},
            ["management network 192.168.121.0/24"],
        ),
        ({"K8S_ANSIBLE_TAGS": "common;reboot"}, ["not a tag name"]),
        ({"K8S_ARCH": "sparc"}, ['arch = "sparc" (from K8S_ARCH)', "use auto, amd64 or arm64"]),
        # CI's Vagrant is Debian 12's (2.3): it cannot pick a box's arm64 build.
        ({"K8S_ARCH": "arm64"}, ["arch arm64 (from K8S_ARCH) needs Vagrant 2.4.0 or newer"]),
    ],
    ids=lambda value: (
        ",".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else None
    ),
)
def test_bad_setting_stops_vagrant_with_one_line(
    vagrant: str, project: Path, env: dict[str, str], fragments: list[str]
) -> None:
    done = validate(project, **env)
    assert_one_line_error(done, *fragments)
    # Nothing half-done: no inventory for a cluster that cannot exist.
    assert not (project / "inventory/vagrant/hosts.yml").exists()


@pytest.mark.parametrize(
    ("local", "fragments"),
    [
        ("worker: 3\n", ["vagrant.local.yml: unknown setting 'worker'"]),
        ("workers: [3\n", ["vagrant.local.yml is not valid YAML", "line 1"]),
        ("kube_version: 1.37\n", ["kube_version = 1.37 (from vagrant.local.yml)", "quote it"]),
        ("- workers\n", ["vagrant.local.yml must hold a mapping"]),
        ("boxes:\n  virtualbox: {box: my/box}\n", ["boxes.virtualbox", "box and a version"]),
    ],
)
def test_bad_local_file_stops_vagrant_with_one_line(
    vagrant: str, project: Path, local: str, fragments: list[str]
) -> None:
    (project / "vagrant.local.yml").write_text(local)
    assert_one_line_error(validate(project), *fragments)


def test_provider_flag_wins_and_is_checked_before_boot(vagrant: str, project: Path) -> None:
    # The subnet is fine for VirtualBox but collides with libvirt's management network: the
    # error proves --provider was read, and it stops `vagrant up` before any machine exists.
    done = run_vagrant(project, "up", "--provider=libvirt", K8S_SUBNET="192.168.121.0/24")
    assert_one_line_error(done, "management network", "(from K8S_SUBNET)")
    assert not (project / ".vagrant/machines").exists()


# What Vagrant itself makes of the Vagrantfile --------------------------------------------------


@pytest.fixture(scope="module")
def vagrant_ruby(vagrant: str) -> None:
    """Ruby that can load Vagrant's library (Debian's vagrant runs on the system Ruby)."""
    probe = subprocess.run(
        ["ruby", "-e", 'gem "vagrant"'], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        missing("no Ruby that loads Vagrant's library (Debian's vagrant package provides one)")


def machines(project: Path, provider: str, **env: str) -> list[dict]:
    done = in_project(
        project, "ruby", str(REPO / "tests/vagrant/vagrant_config.rb"), provider, **env
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def private_ip(machine: dict) -> str:
    (network,) = [n for n in machine["networks"] if n["type"] == "private_network"]
    return network["ip"]


def test_machines_as_vagrant_loads_them(vagrant_ruby: None, project: Path) -> None:
    loaded = machines(project, "virtualbox")
    inv = inventory(project)
    assert [m["name"] for m in loaded] == list(inv["all"]["hosts"])
    for machine in loaded:
        host = inv["all"]["hosts"][machine["name"]]
        assert machine["hostname"] == machine["name"]
        assert private_ip(machine) == host["k8s_node_ip"]
        pinned = versions.pins()["vagrant_boxes"]["virtualbox"]
        assert (machine["box"], machine["box_version"]) == (pinned["box"], pinned["version"])
        assert machine["synced_folders"]["/vagrant"]["disabled"] is True
        assert machine["providers"] == ["virtualbox"]
        settings = [c[1] for c in machine["provider"]["customizations"]]
        assert ["modifyvm", "id", "--cpus", 2] in settings
        assert ["modifyvm", "id", "--memory", "4096"] in settings
        assert machine["provider"]["linked_clone"] is True

    # Ansible runs once: from the last machine, over all of them.
    *others, last = loaded
    assert all(m["provisioners"] == [] for m in others)
    (ansible,) = last["provisioners"]
    assert ansible["type"] == "ansible"
    assert ansible["limit"] == "all"
    assert ansible["inventory_path"] == "inventory/vagrant"
    assert ansible["compatibility_mode"] == "2.0"
    assert ansible["tags"] is None
    assert ansible["playbook"] == "playbooks/site.yml"
    assert (project / ansible["config_file"]).is_file()
    assert os.access(ansible["playbook_command"], os.X_OK)

    # Destroying the first control plane removes the kubeconfig that pointed at it.
    assert loaded[0]["triggers"] == [
        {
            "command": "destroy",
            "info": f"Removing {project / 'kubeconfig'} (it pointed at this cluster)",
        }
    ]
    assert all(m["triggers"] == [] for m in loaded[1:])


def test_libvirt_machines_with_gpu_and_tags(vagrant_ruby: None, project: Path) -> None:
    loaded = machines(
        project,
        "libvirt",
        K8S_PROVIDER="libvirt",
        K8S_CONTROL_PLANES="3",
        K8S_GPU_PCI="0000:41:00.0",
        K8S_CPUS="4",
        K8S_MEMORY="8192",
        K8S_ANSIBLE_TAGS="common,containerd",
    )
    assert [m["name"] for m in loaded] == [
        "k8s-cp-1", "k8s-cp-2", "k8s-cp-3", "k8s-worker-1", "k8s-worker-2",
    ]  # fmt: skip
    assert [private_ip(m) for m in loaded] == [
        "192.168.56.11", "192.168.56.12", "192.168.56.13", "192.168.56.21", "192.168.56.22",
    ]  # fmt: skip
    for machine in loaded:
        assert machine["box"] == versions.pins()["vagrant_boxes"]["libvirt"]["box"]
        assert (machine["provider"]["cpus"], machine["provider"]["memory"]) == (4, 8192)
    gpu = {"domain": "0x0000", "bus": "0x41", "slot": "0x00", "function": "0x0"}
    assert [{k: p[k] for k in gpu} for p in loaded[3]["provider"]["pcis"]] == [gpu]
    assert all(m["provider"]["pcis"] == [] for i, m in enumerate(loaded) if i != 3)
    assert loaded[-1]["provisioners"][0]["tags"] == ["common", "containerd"]


def test_docker_machines_are_unprivileged_systemd_containers(
    vagrant_ruby: None, project: Path
) -> None:
    """The docker provider (booted for real in tests/vagrant): an image instead of a box, the
    subnet as a Docker network, only the capabilities the roles need."""
    loaded = machines(project, "docker", K8S_PROVIDER="docker", K8S_CONTROL_PLANES="3")
    label = f"tf-k8s-workshop.project={project}"
    for machine in loaded:
        assert machine["box"] is None
        (network,) = [n for n in machine["networks"] if n["type"] == "private_network"]
        # Docker makes the network's CIDR from ip/netmask: a prefix length, not 255.255.255.0.
        assert (network["netmask"], network["docker_network__label"]) == (24, label)
        docker = machine["provider"]
        assert docker["image"] == "local/debian-sshd:latest"
        assert (docker["has_ssh"], docker["remains_running"], docker["privileged"]) == (
            True, True, False,
        )  # fmt: skip
        args = docker["create_args"]
        assert {"--cgroupns=host", "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs=/run"} <= (
            set(args)
        )
        assert f"--label={label}" in args
        assert [a for a in args if a.startswith(("--cpus", "--mem"))] == [
            "--cpus=2",
            "--memory=4096m",
        ]
        caps = [a for a in args if a.startswith("--cap-add=")]
        if machine["name"].startswith("k8s-cp-"):
            assert caps == ["--cap-add=SYS_TIME", "--cap-add=NET_ADMIN"]
            assert "--sysctl=net.ipv4.ip_nonlocal_bind=1" in args
        else:
            assert caps == ["--cap-add=SYS_TIME"]
            assert not [a for a in args if "ip_nonlocal_bind" in a]
    # One control plane: no VIP, so no NET_ADMIN anywhere.
    single = machines(project, "docker", K8S_PROVIDER="docker")
    assert all("--cap-add=NET_ADMIN" not in m["provider"]["create_args"] for m in single)


def test_existing_machines_keep_their_provider(vagrant: str, project: Path) -> None:
    """After `vagrant up --provider=docker`, `vagrant provision` (no flag) must configure docker
    again: Vagrant records each machine's provider under .vagrant/machines/NAME/PROVIDER/."""
    state = project / ".vagrant/machines/k8s-cp-1/docker"
    state.mkdir(parents=True)
    (state / "id").write_text("0123456789ab")
    done = validate(project)
    assert done.returncode == 0, done.stderr
    assert "3 VMs on docker" in done.stdout
    key = inventory(project)["all"]["hosts"]["k8s-cp-1"]["ansible_ssh_private_key_file"]
    assert key.endswith("/k8s-cp-1/docker/private_key")


# setup-vagrant ------------------------------------------------------------------------------


def fake_vagrant(project: Path, real: str) -> Path:
    """A vagrant that validates for real and records `up` instead of booting."""
    script = project / "fake-vagrant"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = up ]; then echo "$@" > "{project}/up-called"; exit 0; fi\n'
        f'exec {real} "$@"\n'
    )
    script.chmod(0o755)
    return script


def setup_vagrant(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return in_project(project, str(project / "setup-vagrant"), *args, **env)


def test_setup_vagrant_writes_flags_and_boots(vagrant: str, project: Path) -> None:
    # Ansible on PATH for the tool check, as after `make venv-dev`.
    path = f"{REPO / '.venv/bin'}:{os.environ['PATH']}"
    fake = fake_vagrant(project, vagrant)
    done = setup_vagrant(
        project, "-b", "3", "-n", "4", "-c", "3", "-m", "6144", "-N", "calico", "-y",
        VAGRANT=str(fake), PATH=path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 control planes + 4 workers = 7 VMs" in done.stdout
    assert "Each VM: 3 vCPUs, 6144 MiB" in done.stdout
    written = yaml.safe_load((project / "vagrant.local.yml").read_text())
    assert written == {
        "control_planes": 3,
        "workers": 4,
        "cpus": 3,
        "memory": 6144,
        "cni": "calico",
    }
    assert (project / "up-called").read_text().split() == ["up"]


def test_setup_vagrant_dry_run_changes_nothing(vagrant: str, project: Path) -> None:
    (project / "vagrant.local.yml").write_text("workers: 3\n")
    done = setup_vagrant(
        project, "-n", "1", "-K", "1.36.2", "--dry-run", PATH=f"{REPO / '.venv/bin'}:/usr/bin:/bin"
    )
    assert done.returncode == 0, done.stderr
    assert "1 control plane + 1 worker = 2 VMs" in done.stdout
    assert "Kubernetes 1.36.2" in done.stdout
    assert (project / "vagrant.local.yml").read_text() == "workers: 3\n"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["-b", "2", "-y"], {}, "control_planes = 2 (from vagrant.local.yml) is even"),
        (["-m", "1024", "-y"], {}, "memory = 1024 MiB"),
        (["-n", "3", "-y"], {"K8S_WORKERS": "5"}, "-n/--workers 3 conflicts with K8S_WORKERS=5"),
        (["-n", "3"], {}, "no terminal to ask on; pass -y"),
    ],
)
def test_setup_vagrant_refuses_and_restores(
    vagrant: str, project: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    (project / "vagrant.local.yml").write_text("workers: 3\n")
    fake = fake_vagrant(project, vagrant)
    path = f"{REPO / '.venv/bin'}:{os.environ['PATH']}"
    done = setup_vagrant(project, *args, VAGRANT=str(fake), PATH=path, **env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("setup-vagrant: "), done.stderr
    assert message in lines[0]
    assert (project / "vagrant.local.yml").read_text() == "workers: 3\n"
    assert not (project / "up-called").exists()


def test_setup_vagrant_asks_to_rename_the_old_local_settings(project: Path) -> None:
    (project / "cluster.local.yml").write_text("workers: 3\n")
    done = setup_vagrant(project, "-n", "2", "-y")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "setup-vagrant: cluster.local.yml is now vagrant.local.yml: "
        "rename it (mv cluster.local.yml vagrant.local.yml), then "
        "run this again"
    )
    assert not (project / "vagrant.local.yml").exists()


def test_setup_vagrant_rejects_a_non_number(project: Path) -> None:
    done = setup_vagrant(project, "-n", "two")
    assert done.returncode == 2
    assert "argument -n/--workers: invalid int value: 'two'" in done.stderr


def test_setup_vagrant_is_ruff_clean() -> None:
    done = run("ruff", "check", "--no-cache", "setup-vagrant")
    assert done.returncode == 0, done.stdout


# The provisioner's ansible-playbook wrapper -------------------------------------------------


def test_wrapper_passes_the_inventory_without_the_deprecated_flag(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    node:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: python3\n"
    )
    (tmp_path / "play.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.debug:\n        msg: reached {{ inventory_hostname }}\n"
    )
    done = subprocess.run(
        [
            str(REPO / "playbooks/vagrant-ansible-playbook"),
            "--connection=ssh",
            "--limit=all",
            f"--inventory-file={tmp_path / 'hosts.yml'}",
            str(tmp_path / "play.yml"),
        ],
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reached node" in done.stdout
    assert "--inventory-file" not in done.stdout + done.stderr
