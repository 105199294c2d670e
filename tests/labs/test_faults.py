"""Fault injection on real TensorFlow clusters (labs 04 and 05, and `labctl launch`): a killed
task is restarted and the run completes; with restarts off, the stall watchdog ends the run.
After every run, no process of it is left. One TF cluster at a time (a 2-core machine).
The kill of a worker runs with both supervision mechanisms (PDEATHSIG and the macOS pipe)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _labrun import REPO, labctl

pytestmark = [pytest.mark.labs, pytest.mark.slow]

TF_FIXTURE = REPO / "tests" / "unit" / "fixtures" / "tf_cluster.py"


def latest(state: Path, group: str) -> dict[str, Any]:
    (run,) = (state / "runs").glob(f"{group}*/latest")
    return json.loads((run / "run.json").read_text())


def task(meta: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in meta["tasks"] if t["name"] == name)


@pytest.mark.parametrize("supervision", ["pdeathsig", "pipe"])
def test_killed_worker_in_async_training_is_restarted_and_accuracy_holds(
        tmp_path: Path, supervision: str) -> None:
    proc = labctl(tmp_path, "run", "04", "--kill", "worker:1@300", "--check",
                  env={"LABCTL_SUPERVISION": supervision})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "PASS: test accuracy" in proc.stdout
    meta = latest(tmp_path, "04-")
    assert [k["task"] for k in meta["kills"]] == ["worker:1"]
    assert task(meta, "worker:1")["restarts"] == 1
    assert meta["status"] == "succeeded"


def test_killed_ps_in_async_training_recovers(tmp_path: Path) -> None:
    proc = labctl(tmp_path, "run", "04", "--kill", "ps:0@300", "--check")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    meta = latest(tmp_path, "04-")
    assert [(k["task"], k["step"]) for k in meta["kills"]] == [("ps:0", 300)]
    assert task(meta, "ps:0")["restarts"] == 1
    assert meta["global_step"] >= 1000


def test_killed_ps_in_tf2_training_restarts_the_coordinator_from_its_checkpoint(
        tmp_path: Path) -> None:
    # --kill waits for a PROGRESS line (at most one a second): an early kill with room after it,
    # so that a loaded machine still kills the ps long before training ends.
    proc = labctl(tmp_path, "run", "06", "--steps", "1000", "--kill", "ps:0@100", "--check")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "chief:0  | /job:ps/replica:0/task:0 is unreachable: exiting" in proc.stdout
    restored = [int(line.rsplit(" ", 1)[1]) for line in proc.stdout.splitlines()
                if "restored the checkpoint of step" in line]
    assert restored and all(100 <= step < 1000 for step in restored), proc.stdout[-3000:]
    assert "PASS: " in proc.stdout
    meta = latest(tmp_path, "06-")
    # The chief may fail once more if it restarts before the new ps answers.
    assert task(meta, "ps:0")["restarts"] == 1 and task(meta, "chief:0")["restarts"] >= 1


def test_killed_worker_in_sync_training_is_restarted(tmp_path: Path) -> None:
    proc = labctl(tmp_path, "run", "05", "--kill", "worker:1@200")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    meta = latest(tmp_path, "05-")
    assert task(meta, "worker:1")["restarts"] == 1 and meta["status"] == "succeeded"


def test_sync_training_without_restarts_is_ended_by_the_watchdog(tmp_path: Path) -> None:
    # A dead ps stalls every worker for sure: they wait for it to come back. (A dead worker
    # stalls sync training only if it held a token; killed while waiting for one, it leaves
    # the survivor to train alone, as lab 05's README says.)
    proc = labctl(tmp_path, "run", "05", "--kill", "ps:0@200", "--max-restarts", "0",
                  "--stall-timeout", "20")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
    assert "stalled: global step stuck at" in proc.stderr and "for 20 s" in proc.stderr
    assert "ps:0 (failed)" in proc.stderr  # the dead ps is named
    assert "Traceback" not in proc.stderr.split("last lines of")[0]
    meta = latest(tmp_path, "05-")
    assert meta["status"] == "failed" and task(meta, "ps:0")["restarts"] == 0
    # the watchdog fired within its timeout (plus one poll and the stop) after the kill
    assert meta["wall_time_s"] - meta["kills"][0]["at_s"] < 20 + 10


def test_launch_runs_any_tf_config_program(tmp_path: Path) -> None:
    proc = labctl(tmp_path, "launch", "--ps", "1", "--workers", "2", "--kill", "worker:1@60",
                  "--stall-timeout", "60", "--", "python", str(TF_FIXTURE), "--steps", "200")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "worker:0 | worker:0 done at step 200" in proc.stdout
    meta = latest(tmp_path, "launch")
    assert meta["success"] == "worker:0" and meta["global_step"] >= 200
    assert task(meta, "worker:1")["restarts"] == 1
    assert task(meta, "ps:0")["status"] == "stopped"  # the launcher ends the ps (SIGTERM)
