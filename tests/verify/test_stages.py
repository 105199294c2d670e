"""Stage selection and the full run's skip rule (tests/infra/conftest.py, _stages.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _stages import module_stage, resolve, vocabulary

# The testinfra suite (tests/verify/conftest.py puts it on sys.path). Not imported from that
# conftest: in one run with tests/unit, `conftest` may name another folder's module.
INFRA = Path(__file__).resolve().parents[1] / "infra"
DEMO = """
import pytest
from _infra import skip_by_design

def test_not_for_this_host():
    skip_by_design("h1 is not in group gpu_nodes")

def test_cannot_run_here():
    pytest.skip("LEFT TO A GPU MACHINE: no NVIDIA device on the PCI bus")

def test_passes():
    pass
"""


def test_roles_and_stage_tags_are_both_accepted() -> None:
    assert resolve("storage") == {"nfs_server", "nfs_provisioner"}
    assert resolve("nfs_server, cluster") == {"nfs_server", "cluster"}
    assert resolve("") is None


@pytest.mark.parametrize("bad", ["nfs", "storag", "etcd,nope"])
def test_unknown_stage_is_an_error_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match=r"unknown stage\(s\) .*: use role or stage names"):
        resolve(bad)


def test_every_infra_module_belongs_to_a_known_stage() -> None:
    stages = set().union(*vocabulary().values())
    modules = {path.name: module_stage(path) for path in INFRA.glob("test_*.py")}
    assert {name: stage for name, stage in modules.items() if stage not in stages} == {}


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The suite's conftest over a module of three checks, without hosts."""
    shutil.copy(INFRA / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_cluster_demo.py").write_text(DEMO)
    env = {**os.environ, "PYTHONPATH": str(INFRA)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_full_run_fails_a_skip_that_is_not_by_design(tmp_path: Path) -> None:
    done = run_demo(tmp_path)
    assert done.returncode == 1, done.stdout
    assert "1 failed, 1 passed, 1 skipped" in done.stdout
    assert "skipped in a full run, which allows only by-design skips: LEFT TO A GPU" in done.stdout
    assert "ByDesign: h1 is not in group gpu_nodes" in done.stdout


def test_stage_run_keeps_every_skip_a_skip(tmp_path: Path) -> None:
    done = run_demo(tmp_path, "--stages=cluster")
    assert done.returncode == 0, done.stdout
    assert "1 passed, 2 skipped" in done.stdout
    other = run_demo(tmp_path, "--stages=storage")
    assert "3 skipped" in other.stdout
    assert "stage 'cluster' not selected (stages: nfs_provisioner, nfs_server)" in other.stdout


GPU_MODULE = """
testinfra_hosts = ["ansible://{group}"]

def test_driver(host):
    pass
"""
INVENTORY = """
all:
  hosts:
    n1: {ansible_connection: local}
  children:
    kube_control_plane: {hosts: {n1: {}}}
    gpu_nodes: {hosts: {}}
"""


@pytest.mark.parametrize(
    ("group", "outcome"), [("gpu_nodes", "1 skipped"), ("gpu_node", "1 error")]
)
def test_full_run_accepts_a_declared_empty_group_only(
    tmp_path: Path, group: str, outcome: str
) -> None:
    """An inventory with an empty gpu_nodes has no GPUs, by design; a misspelt group fails."""
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    shutil.copy(INFRA / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_nvidia_gpu.py").write_text(GPU_MODULE.format(group=group))
    env = {**os.environ, "PYTHONPATH": str(INFRA), "PATH": f"{Path(sys.executable).parent}:"
           f"{os.environ['PATH']}"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--connection=ansible",
         f"--ansible-inventory={tmp_path / 'hosts.yml'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert f"{outcome} in" in done.stdout, done.stdout[-2000:]
    assert (done.returncode == 0) == (outcome == "1 skipped")


def test_unknown_stage_stops_the_run_in_one_line(tmp_path: Path) -> None:
    done = run_demo(tmp_path, "--stages=storag")
    assert done.returncode == 4
    assert done.stderr.strip().splitlines() == [
        f"ERROR: {line}" for line in [str(resolve_error("storag"))]
    ]
    assert "Traceback" not in done.stdout + done.stderr


def resolve_error(option: str) -> ValueError:
    with pytest.raises(ValueError) as caught:
        resolve(option)
    return caught.value


def test_make_verify_refuses_stages_from_the_environment(repo: Path) -> None:
    """A stray STAGES export must not narrow a full `make verify`; on the command line it may."""
    env = {**os.environ, "STAGES": "etcd"}
    stray = subprocess.run(
        ["make", "-n", "verify"], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    assert stray.returncode == 2
    assert "STAGES is set in the environment" in stray.stderr
    env.pop("STAGES")
    given = subprocess.run(
        ["make", "-n", "verify", "STAGES=etcd"], cwd=repo, env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert given.returncode == 0, given.stderr
    assert "--stages etcd" in given.stdout
