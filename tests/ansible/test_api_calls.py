"""The roles' calls to the Kubernetes API, run for real against an API-server stand-in.

Each case runs a role's own tasks (kubernetes.core modules, kubectl) on this machine with a
kubeconfig pointing at tests/ansible/apiserver_standin.py. What is proven: the module arguments
and wait conditions can be satisfied by the objects each call creates, and each call reaches
the objects it should. Not proven: what the real cluster does with them (see roles/UPSTREAM.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from apiserver_standin import ApiServer
from venv_run import run

pytestmark = pytest.mark.slow


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    with ApiServer() as server:
        server.kubeconfig(tmp_path / "kubeconfig")
        yield server


def play(tmp_path: Path, api: ApiServer, role: str, tasks_from: str = "main",
         hosts: dict[str, dict[str, Any]] | None = None, **extra: Any) -> tuple[int, str]:
    """Run `role` on localhost (plus inventory-only `hosts`) against `api`; (rc, output)."""
    groups = {"kube_control_plane": {"hosts": {"localhost": {"k8s_node_ip": "127.0.0.1"}}},
              "k8s_cluster": {"hosts": {name: {} for name in hosts or {}}},
              "nfs_server": {"hosts": {"localhost": {}}}}
    inventory = {"all": {
        "hosts": {name: {"k8s_node_ip": ip["k8s_node_ip"], "ansible_connection": "local"}
                  for name, ip in (hosts or {}).items()},
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
               "-e", json.dumps(extra), timeout=300)
    return done.returncode, done.stdout + done.stderr


def test_nfs_provisioner_install_finishes_and_proves_a_volume(
    tmp_path: Path, api: ApiServer
) -> None:
    kubeconfig = str(tmp_path / "kubeconfig")
    rc, out = play(tmp_path, api, "nfs_provisioner", nfs_provisioner_kubeconfig=kubeconfig,
                   nfs_provisioner_wait_timeout=15)
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
    rc, out = play(tmp_path, api, "nfs_provisioner", nfs_provisioner_kubeconfig=kubeconfig,
                   nfs_provisioner_wait_timeout=15)
    assert rc == 0, out[-3000:]
    assert "changed=0" in out, out[-2000:]
