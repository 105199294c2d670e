"""The roles' calls to the Kubernetes API, run for real against an API-server stand-in.

Each case runs a role's own tasks (kubernetes.core modules, kubectl) on this machine with a
kubeconfig pointing at tests/ansible/_apiserver.py, and with the Python the control_plane
role makes for them (its kube_client.yml: a virtualenv with the pinned kubernetes client). What
is proven: the module arguments and wait conditions can be satisfied by the objects each call
creates, each call reaches the objects it should, and the pinned client runs them. Not proven:
what a real cluster does with them (see roles/UPSTREAM.md).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _apiserver
import pytest
import yaml
from _apiserver import ApiServer
from _csr import csr, ip_san, own_sans
from _tasks import tasks_with_vars
from _venv import run

from labctl import versions

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kube_client_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The control_plane role's virtualenv for kubernetes.core, made here by its own tasks."""
    root = tmp_path_factory.mktemp("kube-client")
    python = root / "venv/bin/python3"
    (root / "play.yml").write_text(yaml.safe_dump([{
        "name": "kube client", "hosts": "localhost", "connection": "local", "gather_facts": True,
        "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "tasks": [{"ansible.builtin.include_role": {
            "name": "control_plane", "tasks_from": "kube_client"}}],
    }]))
    # No apt here: this machine's Python has venv already; the role installs python3-venv.
    done = run("ansible-playbook", "-i", "localhost,", root / "play.yml", "-e", json.dumps(
        {"kube_client_python": str(python), "control_plane_packages": []}), timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return str(python)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    with ApiServer() as server:
        server.kubeconfig(tmp_path / "kubeconfig")
        yield server


def play(tmp_path: Path, python: str, role: str, tasks_from: str = "main",
         hosts: dict[str, dict[str, Any]] | None = None, **extra: Any) -> tuple[int, str]:
    """Run `role` on localhost (plus `hosts`, local too), its kubernetes.core tasks with
    `python`; (rc, output)."""
    groups = {"kube_control_plane": {"hosts": {"localhost": {"k8s_node_ip": "127.0.0.1"}}},
              "k8s_cluster": {"hosts": {name: {} for name in hosts or {}}},
              "nfs_server": {"hosts": {"localhost": {}}}}
    inventory = {"all": {
        "hosts": {name: {**hostvars, "ansible_connection": "local"}
                  for name, hostvars in (hosts or {}).items()},
        "children": groups,
    }}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    playbook = [{
        "name": f"{role} against the API stand-in",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "tasks": [{"ansible.builtin.include_role": {"name": role, "tasks_from": tasks_from}}],
    }]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
    done = run("ansible-playbook", "-i", tmp_path / "hosts.yml", tmp_path / "play.yml",
               "-e", json.dumps({"kube_client_python": python, **extra}), timeout=300)
    return done.returncode, done.stdout + done.stderr


def test_a_failed_smoke_pod_is_reported_by_the_role(
    tmp_path: Path, api: ApiServer, kube_client_python: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a wait that sits out its timeout on a pod that has already failed."""
    monkeypatch.setattr(_apiserver, "FAILING_PODS", {"nfs-smoke-reader"})
    extra = {"nfs_provisioner_kubeconfig": str(tmp_path / "kubeconfig"),
             "nfs_provisioner_wait_timeout": 60}
    started = time.monotonic()
    rc, out = play(tmp_path, kube_client_python, "nfs_provisioner", **extra)
    assert rc != 0
    assert "nfs_provisioner: the smoke test failed" in out, out[-3000:]
    assert "nfs-smoke-reader', 'Failed'" in out, out[-3000:]
    assert time.monotonic() - started < 55, "waited for the timeout instead"


def test_pinned_client_is_what_kubernetes_core_runs_with(kube_client_python: str) -> None:
    version = subprocess.run(
        [kube_client_python, "-c", "import kubernetes; print(kubernetes.__version__)"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert version == versions.get("control_plane_kube_client_version")
    assert tuple(int(p) for p in version.split(".")[:2]) >= (24, 2)  # kubernetes.core 6's floor


def test_every_kubernetes_core_task_runs_with_the_pinned_client() -> None:
    """Directly, through its block, or through the include_tasks that runs its file."""
    includes = {}  # task file -> (the file including it, that include's vars)
    for path in (REPO / "roles").glob("*/tasks/*.yml"):
        for task, inherited in tasks_with_vars(path):
            target = task.get("ansible.builtin.include_tasks")
            if target:
                includes[path.parent / target] = (path, {**inherited, **task.get("vars", {})})

    def included(path: Path) -> dict[str, Any]:
        if path not in includes:
            return {}
        parent, variables = includes[path]
        return {**included(parent), **variables}

    missing, checked = [], 0
    for path in (REPO / "roles").glob("*/tasks/*.yml"):
        for task, inherited in tasks_with_vars(path):
            if not any(k.startswith("kubernetes.core.") for k in task):
                continue
            checked += 1
            python = {**included(path), **inherited, **task.get("vars", {})}.get(
                "ansible_python_interpreter")
            if python != "{{ kube_client_python }}":
                missing.append(f"{path.relative_to(REPO)}: {task['name']}")
    assert checked >= 10 and missing == []


def test_nfs_provisioner_install_finishes_and_proves_a_volume(
    tmp_path: Path, api: ApiServer, kube_client_python: str
) -> None:
    extra = {"nfs_provisioner_kubeconfig": str(tmp_path / "kubeconfig"),
             "nfs_provisioner_wait_timeout": 15}
    rc, out = play(tmp_path, kube_client_python, "nfs_provisioner", **extra)
    assert rc == 0, out[-3000:]
    deploy = api.get("Deployment", "nfs-provisioner", "nfs-provisioner")
    assert deploy is not None
    sc = api.get("StorageClass", "nfs-client")
    assert sc is not None
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    # The smoke test's claim and pods were made, then deleted again.
    assert any(p.startswith("persistentvolumeclaims/") for p in api.kinds("POST"))
    assert any(p.startswith("pods/") for p in api.kinds("DELETE"))
    assert not [k for k in api.objects if k[0] in ("pods", "persistentvolumeclaims")]

    # A second run changes nothing.
    rc, out = play(tmp_path, kube_client_python, "nfs_provisioner", **extra)
    assert rc == 0, out[-3000:]
    assert "changed=0" in out, out[-2000:]


NODES = {"k8s-cp-1": "192.168.56.11", "k8s-worker-1": "192.168.56.21"}


def _kubelet(api: ApiServer, certs: Path) -> None:
    """What a kubelet does once its request is approved: write the serving certificate."""
    def on_update(obj: dict[str, Any]) -> None:
        approved = [c for c in obj.get("status", {}).get("conditions", [])
                    if c["type"] == "Approved"]
        if obj["kind"] == "CertificateSigningRequest" and approved:
            node = obj["spec"]["username"].removeprefix("system:node:")
            (certs / node / "kubelet-server-current.pem").write_text("issued")
    api.on_update = on_update


def csr_vars(tmp_path: Path, api: ApiServer) -> dict[str, Any]:
    """Role variables; each node's files live under tmp_path/NODE/ (joined: kubelet.conf)."""
    for node in NODES:
        (tmp_path / node).mkdir()
        (tmp_path / node / "kubelet.conf").write_text("joined")
    return {
        "kubelet_csr_enabled": True,
        "kubelet_csr_kubeconfig": str(tmp_path / "kubeconfig"),
        "kubelet_csr_wait_timeout": 10,
    }


def node_hosts(tmp_path: Path) -> dict[str, dict[str, Any]]:
    return {n: {"k8s_node_ip": ip,
                "kubelet_csr_kubelet_kubeconfig": str(tmp_path / n / "kubelet.conf"),
                "kubelet_csr_serving_cert": str(tmp_path / n / "kubelet-server-current.pem")}
            for n, ip in NODES.items()}


def test_kubelet_serving_certificates_are_approved_for_joined_nodes(
    tmp_path: Path, api: ApiServer, kube_client_python: str
) -> None:
    extra = csr_vars(tmp_path, api)
    _kubelet(api, tmp_path)
    for i, node in enumerate(NODES):
        api.add(csr(f"csr-{i}", f"system:node:{node}", own_sans(node, NODES[node])))
    hosts = node_hosts(tmp_path)
    rc, out = play(tmp_path, kube_client_python, "kubelet_csr", hosts=hosts, **extra)
    assert rc == 0, out[-3000:]
    assert sorted(api.kinds("PUT")) == [
        "certificatesigningrequests/csr-0", "certificatesigningrequests/csr-1"]

    # Every node holds its certificate: a second run changes nothing.
    rc, out = play(tmp_path, kube_client_python, "kubelet_csr", hosts=hosts, **extra)
    assert rc == 0, out[-3000:]
    assert "changed=0" in out, out[-2000:]


def test_a_request_naming_another_address_is_left_pending_and_named(
    tmp_path: Path, api: ApiServer, kube_client_python: str
) -> None:

    extra = csr_vars(tmp_path, api)
    _kubelet(api, tmp_path)
    nat = ip_san("10.0.2.15")
    api.add(csr("csr-cp", "system:node:k8s-cp-1", own_sans("k8s-cp-1", NODES["k8s-cp-1"])))
    api.add(csr("csr-nat", "system:node:k8s-worker-1",
                [*own_sans("k8s-worker-1", NODES["k8s-worker-1"]), nat]))
    hosts = node_hosts(tmp_path)
    rc, out = play(tmp_path, kube_client_python, "kubelet_csr", hosts=hosts, **extra)
    assert rc != 0
    assert "kubelet_csr: k8s-worker-1 has no serving certificate" in out, out[-3000:]
    assert api.kinds("PUT") == ["certificatesigningrequests/csr-cp"]
