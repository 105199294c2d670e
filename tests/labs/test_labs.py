"""The local labs beyond their READMEs (which test_readme_commands.py follows end to end): more
tasks, offline MNIST, the bench, and the lab programs' own handling of bad input.

One TF cluster at a time (a 2-core machine); each run's state lives under tmp_path, and no
process of it may outlive the run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from _labrun import LOCAL_LABS, REPO, labctl

LABS = REPO / "labs"
LAB_DIRS = [p.name for p in LOCAL_LABS]


def latest(state: Path, lab: str) -> tuple[dict[str, Any], Path]:
    (run,) = (state / "runs").glob(f"{lab}*/latest")
    return json.loads((run / "run.json").read_text()), run.resolve()


@pytest.mark.labs
@pytest.mark.slow
def test_async_lab_spreads_variables_over_two_ps_with_three_workers(tmp_path: Path) -> None:
    proc = labctl(tmp_path, "run", "04", "--ps", "2", "--workers", "3", "--check")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "variable updates per ps: ps:0 2, ps:1 2" in proc.stdout, proc.stdout[-2000:]
    meta, run = latest(tmp_path, "04")
    assert len(meta["tasks"]) == 5 and all(t["exit_code"] == 0 for t in meta["tasks"])
    assert sorted(p.name for p in (run / "output" / "tasks").iterdir()) == [
        "worker-0.json", "worker-1.json", "worker-2.json"]
    # the checkpoint itself is sharded over both ps tasks
    assert list((run / "output" / "checkpoints").glob("model.ckpt-*.data-00001-of-00002"))


@pytest.mark.labs
@pytest.mark.slow
def test_mnist_offline_is_a_configuration_error_not_a_restart_loop(tmp_path: Path) -> None:
    # No cached copy, and a proxy that refuses: the download fails here and on any machine.
    env = {"KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9"}
    started = time.monotonic()
    proc = labctl(tmp_path / "state", "run", "07", "--workers", "1", "--dataset", "mnist",
                  env=env)
    assert proc.returncode != 0
    assert time.monotonic() - started < 60
    assert "error: cannot load MNIST" in proc.stdout + proc.stderr
    assert "use --dataset digits" in proc.stdout + proc.stderr
    meta, _ = latest(tmp_path / "state", "07")
    assert meta["status"] == "failed" and meta["restarts"] == []
    assert [t["exit_code"] for t in meta["tasks"]] == [2]


GOOD = {"cluster": {"ps": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]},
        "task": {"type": "worker", "index": 0}}
BAD_TF_CONFIG = [
    (None, "TF_CONFIG is not set"),
    ("{not json", "TF_CONFIG is not valid JSON"),
    (json.dumps({"cluster": GOOD["cluster"]}), 'TF_CONFIG needs a "task" object'),
    (json.dumps({**GOOD, "task": {"type": "worker", "index": 5}}),
     "task index 5 is out of range: the cluster has 1 worker task(s)"),
    (json.dumps({**GOOD, "task": {"type": "evaluator", "index": 0}}),
     "task type 'evaluator' is not a job of the cluster"),
    (json.dumps({**GOOD, "cluster": {**GOOD["cluster"], "master": ["h:1"]}}),
     "unknown job type 'master'"),
    (json.dumps({**GOOD, "cluster": {"ps": ["no-port"], "worker": ["h:2"]}}),
     "'no-port' in cluster \"ps\" is not \"host:port\""),
    (json.dumps({**GOOD, "cluster": {"worker": ["h:2"]}}),
     'this lab needs a "ps" job in the cluster'),
    (json.dumps({**GOOD, "cluster": {**GOOD["cluster"], "chief": ["h:3"]}}),
     "this lab has no 'chief' job; it uses ps, worker"),
]


@pytest.mark.parametrize(("tf_config", "message"), BAD_TF_CONFIG,
                         ids=[m.split(":")[0][:40] for _, m in BAD_TF_CONFIG])
def test_lab_program_rejects_a_bad_tf_config_in_one_line(tmp_path: Path, tf_config: str | None,
                                                         message: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(LABS)}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    proc = subprocess.run([sys.executable, str(LABS / "04-between-graph-async" / "train.py"),
                           "--output-dir", str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr  # one line
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert proc.stdout == ""
    assert not list(tmp_path.iterdir())  # nothing half-done


def program(lab: str) -> Path:
    return LABS / lab / tomllib.loads((LABS / lab / "lab.toml").read_text())["program"]


@pytest.mark.parametrize("lab", [d for d in LAB_DIRS if d[:2] != "01"])
def test_every_cluster_lab_needs_tf_config(tmp_path: Path, lab: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(LABS)}
    env.pop("TF_CONFIG", None)
    proc = subprocess.run([sys.executable, str(program(lab)), "--output-dir", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "error: TF_CONFIG is not set" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_lab_program_rejects_a_bad_option_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(LABS), "TF_CONFIG": json.dumps(GOOD)}
    proc = subprocess.run([sys.executable, str(program("05-between-graph-sync")),
                           "--output-dir", str(tmp_path), "--steps", "0"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: argument --steps: '0' must be at least 1 "
                                   "(see `train.py --help`)")


def test_lab_toml_args_match_the_programs_defaults() -> None:
    """labctl passes lab.toml's [args]; a program run by hand (or in a pod) uses its own
    defaults: both must say the same, unless the lab borrows another lab's program."""
    for lab in LAB_DIRS:
        meta = tomllib.loads((LABS / lab / "lab.toml").read_text())
        env = {**os.environ, "PYTHONPATH": str(LABS)}
        shown = subprocess.run([sys.executable, str(program(lab)), "--help"], env=env,
                               capture_output=True, text=True, timeout=60, check=True).stdout
        for name in meta.get("args", {}):
            assert f"--{name.replace('_', '-')}" in shown, (lab, name)  # as labctl passes it
        if "steps" in meta.get("args", {}) and program(lab).parent.name == lab:
            default = re.search(r"--steps STEPS\s+global training steps \(default (\d+)\)", shown)
            assert default and int(default.group(1)) == meta["args"]["steps"], (lab, shown)


def test_bench_imports_no_tensorflow() -> None:
    code = "import sys, labctl.bench; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False).returncode == 0


@pytest.mark.labs
@pytest.mark.slow
def test_bench_records_a_lab_and_its_baseline(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "labctl.bench", "--labs", "07", "--workers", "1",
                           "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert [(r["run"], r["status"]) for r in rows] == [("07 1w cold", "succeeded"),
                                                        ("07 1w", "succeeded"),
                                                        ("07 1w plain", "succeeded"),
                                                        ("07 baseline", "succeeded")]
    for row in rows:
        assert row["steps"] == 400 and row["test_accuracy"] >= 0.95
        assert 0 < row["startup_s"] <= row["time_to_target_s"] < row["wall_s"]
    cold, forked, plain, _ = rows
    for row in (cold, forked, plain):
        assert row["first_step_s"] == round(row["task_start_s"] + row["startup_s"], 2)
        # The start-up split: TensorFlow's import and the rest make up startup_s.
        assert 0 < row["python_s"] < 5
        assert abs(row["tf_import_s"] + row["connect_s"] - row["startup_s"]) <= 0.002
        assert 0 < row["connect_s"] <= row["startup_s"]
        assert row["first_step_s"] <= row["time_to_target_s"]  # both from the launcher's start
        assert row["vs_baseline"] > 0
    # A plain task imports TensorFlow itself (seconds); a forked one finds it imported.
    assert plain["tf_import_s"] > 1 and cold["tf_import_s"] == forked["tf_import_s"] == 0
    # A forked task finds TensorFlow imported: the import moved out of its start-up, into the
    # server's start on the first run, and out of the way on the next.
    assert max(cold["startup_s"], forked["startup_s"]) < plain["startup_s"]
    assert cold["task_start_s"] > plain["task_start_s"]
    assert forked["first_step_s"] < cold["first_step_s"]
    # Peak memory (PSS): a forked task shares TensorFlow's pages with its server.
    for row in rows:
        assert 0 < row["task_mib"] <= row["run_mib"]
    assert forked["task_mib"] < plain["task_mib"]
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
