"""Bad input to `labctl` against the real labs: one line on stderr naming the problem, exit code
2, no traceback, no run directory and no process left. Fast: nothing here starts TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labctl import procs

REPO = Path(__file__).resolve().parents[2]

CASES = [
    (["run", "99"], "unknown lab '99'; valid labs: 01-dataflow-graph"),
    (["run", "nope", "--check"], "unknown lab 'nope'"),
    (["run", "02", "--workers", "0"], "--workers 0 is outside 1.."),
    (["run", "02", "--workers", "-1"], "argument --workers: must not be negative, got -1"),
    (["run", "02", "--workers", "two"], "argument --workers: expected a number, got 'two'"),
    (["run", "02", "--ps", "9"], "--ps 9 is outside 1.."),
    (["run", "01", "--ps", "1"], "lab 01-dataflow-graph takes no --ps"),
    (["run", "01", "--steps", "5"], "lab 01-dataflow-graph takes no --steps"),
    (["run", "02", "--steps", "0"], "argument --steps: must be at least 1"),
    (["run", "03", "--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
    (["run", "08"], "lab 08-kubernetes-basics needs a Kubernetes cluster: run it with --target"),
    (["run", "03", "--kill", "worker:1"], "bad --kill 'worker:1': expected TASK@STEP"),
    (["run", "03", "--kill", "worker@5"], "bad --kill 'worker@5'"),
    (["run", "03", "--kill", "worker:7@5"], "no task 'worker:7' in this job; tasks are: chief:0"),
    (["run", "02", "--kill", "worker:1@5"], "prints no progress, so --kill TASK@STEP cannot apply"),
    (["run", "03", "--stall-timeout", "0"], "argument --stall-timeout: must be more than 0"),
    (["run", "all", "--workers", "2"], "--workers applies to one lab, not to `run all`"),
    (["run"], "the following arguments are required: LAB"),
    (["run", "02", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required: COMMAND"),
    (["check", "02"], "02-local-cluster has no run yet: start one with `labctl run 02`"),
    (["check", "08"], "has no run yet: start one with `labctl run 08 --target k8s`"),
    (["check", "02", "--run", "../x"], "bad run id '../x'"),
    (["logs", "02"], "02-local-cluster has no run yet"),
    (["launch", "--workers", "2", "--", "python", "no_such_script.py"],
     "launch: script not found: no_such_script.py"),
    (["launch", "--workers", "2", "--", "no-such-command"], "command not found: no-such-command"),
    (["launch", "--workers", "2"], "launch needs a command after --"),
    (["launch", "--workers", "0", "--", "true"], "launch needs --workers 1 or more, or --chief"),
    (["launch", "--ps", "x", "--", "true"], "argument --ps: expected a number, got 'x'"),
    (["launch", "--kill", "ps:0@5", "--", "true"], "no task 'ps:0' in this job; tasks are:"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "LABCTL_STATE_DIR": str(state)}
    env.pop("LABCTL_LABS_DIR", None)
    proc = subprocess.run([sys.executable, "-m", "labctl", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert lines[0].startswith("labctl")
    assert not (state / "runs").exists() or not any((state / "runs").rglob("run.json"))
    assert not [p for p, run in procs.run_processes().items() if run.is_relative_to(state)]
