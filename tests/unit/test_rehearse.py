"""The rehearsal driver (labctl/rehearse): plan, preflight, sequencing, the table, exit codes.

The steps here are real commands (sh); the Vagrantfile's plan comes from the real Vagrantfile
through `vagrant validate`. The driver on a real docker-provider cluster is
tests/vagrant/test_rehearse_docker.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.rehearse import plan, preflight, report, runner
from labctl.rehearse.plan import Cluster, Step

FIXTURES = Path(__file__).parent / "fixtures"
VMS = Cluster("virtualbox", ("k8s-cp-1", "k8s-worker-1", "k8s-worker-2"), 12288)
FAILED_LINE = "FAILED tests/infra/test_cluster.py::test_x - boom"
CONTAINERS = Cluster("docker", ("k8s-cp-1", "k8s-worker-1"), 8192, ("common", "etcd"))


def rehearse(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labctl.rehearse", *args], capture_output=True, text=True,
        timeout=300, check=False, env=env,
    )  # fmt: skip


def test_plan_is_read_from_the_vagrantfile(vagrant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8S_WORKERS", "1")
    monkeypatch.setenv("K8S_ANSIBLE_TAGS", "common,etcd")
    cluster = plan.read_cluster(vagrant)
    assert cluster.provider == "virtualbox"
    assert cluster.nodes == ("k8s-cp-1", "k8s-worker-1")
    assert cluster.memory_mib == 2 * 4096
    assert cluster.ansible_tags == ("common", "etcd")


def test_bad_cluster_settings_stop_before_anything_boots(vagrant: str, tmp_path: Path) -> None:
    env = {**os.environ, "K8S_WORKERS": "many"}
    done = rehearse("--out", str(tmp_path), env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("rehearse: cluster config: K8S_WORKERS"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [], "nothing may be written before the preflight passes"


def test_a_host_without_the_provider_stops_in_one_line(vagrant: str, tmp_path: Path) -> None:
    if shutil.which("VBoxManage"):
        pytest.skip("this host has VirtualBox")
    done = rehearse("--out", str(tmp_path))
    assert done.returncode == 2
    assert "rehearse: VirtualBox is not installed" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_vm_steps_run_every_lab_and_destroy_at_the_end(tmp_path: Path) -> None:
    steps = plan.steps(VMS, tmp_path, keep=False, disruptive=True, labctl="labctl")
    names = [s.name for s in steps]
    assert names[:3] == ["vagrant up", "re-provision changes nothing", "make verify"]
    assert names[3:9] == [f"lab {n}" for n in ("04", "05", "08", "09", "10", "11")]
    assert names[9] == "lab 04 --kill worker:1@300" and names[-1] == "vagrant destroy"
    assert names[10:15] == ["classroom up", "lab 09 as rehearsal-a", "lab 09 as rehearsal-b",
                            "classroom status", "classroom down"]
    assert steps[11].argv[-2:] == ("--kubeconfig",
                                   str(tmp_path / "rehearsal-classroom" / "rehearsal-a"
                                       / "kubeconfig"))
    plan.write_names(tmp_path / "room")
    assert (tmp_path / "room" / "names.txt").read_text() == "rehearsal-a\nrehearsal-b\n"
    assert not any(s.skip for s in steps)
    assert steps[2].env == {"INFRA_DISRUPTIVE": "1"}
    assert not [a for a in steps[2].argv if a.startswith("STAGES=")], "a full verify"
    assert steps[3].argv == ("labctl", "run", "04", "--target", "k8s", "--check", "-q")


def test_container_steps_skip_the_labs_and_verify_only_what_was_provisioned(
    tmp_path: Path,
) -> None:
    steps = plan.steps(CONTAINERS, tmp_path, keep=True, disruptive=False, labctl="labctl")
    assert "STAGES=common,etcd,cluster" in steps[2].argv
    labs = [s for s in steps if s.stage == "labs"]
    assert labs and all("runs no kubelet" in s.skip for s in labs)
    assert steps[-1].skip == "KEEP=1: the cluster stays up"


def test_preflight_memory_disk_and_sources() -> None:
    assert preflight.memory_problem(VMS, 20000) == ""
    assert preflight.memory_problem(VMS, 8000).startswith(
        "8000 MiB of memory free, the cluster needs 14336 MiB"
    )
    assert preflight.memory_problem(CONTAINERS, 100) == "", "containers reserve no memory"
    assert preflight.disk_problem(VMS, 30.0) == ""
    assert "the cluster needs 18 GiB" in preflight.disk_problem(VMS, 10.0)
    down = {"https://pkgs.k8s.io"}
    assert preflight.internet_problem(VMS, lambda url: url not in down) == (
        "no answer from https://pkgs.k8s.io: the bring-up downloads from them (proxy?)"
    )
    assert preflight.internet_problem(VMS, lambda url: True) == ""
    assert preflight.provider_problem("parallels").startswith("provider parallels is not one")


def sh(name: str, script: str, stage: str = "cluster", **kw: str) -> Step:
    return Step(name, stage, ("sh", "-c", script), **kw)


def test_a_failure_half_way_keeps_the_cluster_and_still_reports(tmp_path: Path) -> None:
    shown: list[str] = []
    steps = [
        sh("up", "echo booting; echo 'PLAY RECAP'; echo 'cp-1 : ok=3 changed=2 unreachable=0'"),
        sh("again", "echo 'PLAY RECAP'; echo 'cp-1 : ok=3 changed=1 unreachable=0'",
           judge="idempotent"),
        sh("lab 10", "echo 'labctl: skipped: no node offers nvidia.com/gpu'; exit 3", "labs"),
        sh("verify", f"echo noise; echo '{FAILED_LINE}'; exit 1"),
        sh("lab 04", "echo never", "labs"),
        sh("destroy", "echo never", "teardown"),
    ]  # fmt: skip
    outcomes = runner.run(steps, tmp_path, {}, tmp_path, shown.append)
    assert [(o.name, o.status, o.reason) for o in outcomes] == [
        ("up", "passed", ""),
        ("again", "failed", "changed on cp-1 (1): a role is not idempotent"),
        ("lab 10", "not run", "an earlier step failed"),
        ("verify", "not run", "an earlier step failed"),
        ("lab 04", "not run", "an earlier step failed"),
        ("destroy", "not run", "kept for inspection"),
    ]
    assert (tmp_path / outcomes[0].log).read_text().startswith("booting\n")
    assert "booting" in shown, "step output is streamed"
    assert "rehearse: [2/6] again: failed" in "\n".join(shown)
    report.write(tmp_path, CONTAINERS, outcomes, [("Prepare every node", 61.0)])
    table = (tmp_path / "report.md").read_text()
    assert table.startswith("# Rehearsal: NO-GO")
    assert "| cluster | again | failed |" in table and "| Prepare every node | 61 s |" in table
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["verdict"] == "NO-GO" and len(data["steps"]) == 6


def test_skips_and_failures_carry_the_tools_own_reason(tmp_path: Path) -> None:
    steps = [
        sh("lab 10", "echo 'labctl: skipped: no node offers nvidia.com/gpu'; exit 3", "labs"),
        sh("verify", f"echo noise; echo '{FAILED_LINE}'; exit 1"),
    ]  # fmt: skip
    outcomes = runner.run(steps, tmp_path, {}, tmp_path, lambda line: None)
    assert [(o.status, o.reason) for o in outcomes] == [
        ("skipped", "no node offers nvidia.com/gpu"),
        ("failed", FAILED_LINE),
    ]
    assert report.go(outcomes[:1]) and not report.go(outcomes)


def test_no_task_timestamps_mean_no_bring_up_times() -> None:
    assert report.stage_times("Bringing machine 'k8s-cp-1' up...\nfatal: no box\n") == []


def test_bring_up_time_per_play_from_profile_tasks() -> None:
    # A real ansible-playbook run with ansible.posix.profile_tasks (two plays, sleep 1 and 2).
    times = report.stage_times((FIXTURES / "profile-tasks.txt").read_text())
    assert [name for name, _ in times] == ["Prepare every node", "Bring up the control plane"]
    assert times[0][1] == pytest.approx(1.741, abs=0.01)
    assert times[1][1] == pytest.approx(2.486, abs=0.01)


FAKE_VAGRANT = """#!/bin/sh
# vagrant's stand-in: the plan of a 2-node docker cluster, and a bring-up that fails.
case "$1" in
  validate) printf '%s\\n' \\
    'Cluster: 1 control plane + 1 worker = 2 VMs on docker (amd64), Kubernetes 1.0.0' \\
    'Each VM: 2 vCPUs, 2048 MiB, box; in total 4 vCPUs and 4096 MiB of host memory' \\
    '  k8s-cp-1       10.0.0.11   control plane' '  k8s-worker-1   10.0.0.21   worker' ;;
  up) echo 'TASK [common : Install packages]'; echo 'fatal: [k8s-cp-1]: FAILED! => no mirror'
      exit 1 ;;
  *) echo "unexpected: $*" >&2; exit 9 ;;
esac
"""


def test_a_failed_bring_up_writes_the_table_and_keeps_the_machines(
    tmp_path: Path, require_docker: None
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vagrant").write_text(FAKE_VAGRANT)
    (bin_dir / "vagrant").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = rehearse("--project", str(tmp_path), "--out", str(tmp_path / "out"), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    (run,) = (tmp_path / "out").iterdir()
    table = json.loads((run / "report.json").read_text())
    assert table["verdict"] == "NO-GO"
    assert table["steps"][0]["reason"] == "fatal: [k8s-cp-1]: FAILED! => no mirror"
    after = {s["name"]: (s["status"], s["reason"]) for s in table["steps"][1:]}
    assert after["make verify"] == ("not run", "an earlier step failed")
    assert after["vagrant destroy"] == ("not run", "kept for inspection")
    assert {status for status, _ in after.values()} == {"not run", "skipped"}  # labs: docker
    assert f"(cd {tmp_path} && vagrant destroy -f)" in done.stdout
    assert "unexpected" not in done.stderr, "nothing but validate and up may run"
