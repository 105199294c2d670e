"""The local launcher's lifecycle with a fast non-TensorFlow program (fixtures/labs/02-fake):
success, restarts with back-off, exit code 2, --kill, watchdog, shutdown, reaping, launch.

Every test runs with each way a task starts and dies with labctl (labctl/local.py): a plain
process under Linux's PDEATHSIG, one under the parent-death pipe that macOS uses (so the macOS
path is exercised here too), and one forked from the pre-imported interpreter (labctl/preload.py;
the fixture labs preload `json`, so the server starts in a moment)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from _labctl import (
    FIXTURES,
    LABCTL,
    labctl_env,
    leftovers,
    run_json,
    start,
    tasks_by_name,
)

from labctl import procs


@pytest.fixture(autouse=True, params=["pdeathsig", "pipe", "preload"])
def supervision(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    forked = request.param == "preload"
    monkeypatch.setenv("LABCTL_SUPERVISION", "pdeathsig" if forked else request.param)
    monkeypatch.setenv("LABCTL_PRELOAD", "1" if forked else "0")
    return str(request.param)


def test_run_succeeds_and_writes_the_run_directory(labctl, state: Path, supervision: str) -> None:
    proc = labctl("run", "02", "--check")
    assert proc.returncode == 0, proc.stderr
    assert "PASS: global step 200" in proc.stdout
    meta = run_json(state, "02-fake")
    # peak memory per task, and the interpreter the tasks were forked from (labctl.memory)
    peaks = meta["memory"]["tasks"]
    assert {"ps:0", "worker:0", "worker:1"} <= set(peaks) and ("preload" in peaks) == (
        supervision == "preload")
    # (each peak is rounded to 0.1 MiB on its own)
    assert sum(peaks.values()) + 0.2 >= meta["memory"]["peak_mib"] > max(peaks.values()) > 5
    assert meta["status"] == "succeeded" and meta["target"] == "local"
    assert meta["global_step"] == 200 and meta["counts"] == {"ps": 1, "worker": 2}
    tasks = tasks_by_name(meta)
    assert tasks["worker:0"]["status"] == "succeeded" and tasks["worker:0"]["exit_code"] == 0
    assert tasks["ps:0"]["status"] == "stopped"  # shutdown = "launcher": SIGTERM after success
    assert len(set(meta["cluster"]["ps"] + meta["cluster"]["worker"])) == 3
    run = state / "runs" / "02-fake" / "latest"
    assert sorted(p.name for p in (run / "logs").iterdir()) == [
        "ps-0.log", "worker-0.log", "worker-1.log"]
    assert "worker:1 starting" in (run / "logs" / "worker-1.log").read_text()
    assert (run / "output" / "results.json").is_file()
    assert '"passed": true' in (run / "check.json").read_text()
    # task lines are prefixed; PROGRESS lines drive the plain progress line instead
    assert "worker:1 | worker:1 starting" in proc.stdout
    assert "progress: 02-fake: step 200/200" in proc.stdout
    assert "| PROGRESS" not in proc.stdout


def test_quiet_shows_progress_and_verdict_only(labctl) -> None:
    proc = labctl("run", "02", "-q")
    assert proc.returncode == 0
    assert " | " not in proc.stdout and "succeeded in" in proc.stdout


def test_single_process_lab_gets_no_tf_config(labctl, state: Path) -> None:
    proc = labctl("run", "1", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "main | value is 9" in proc.stdout and "PASS: value is 9" in proc.stdout
    assert (state / "runs" / "01-single" / "latest" / "logs" / "main.log").is_file()


def test_failed_task_is_restarted_with_a_marker_in_its_log(labctl, state: Path) -> None:
    proc = labctl("run", "02", env={"FAKE_FAIL_ONCE": "worker:1"})
    assert proc.returncode == 0, proc.stderr
    assert "worker:1 exit 1; restart 1 in 1 s" in proc.stdout
    meta = run_json(state, "02-fake")
    assert tasks_by_name(meta)["worker:1"]["restarts"] == 1
    assert meta["restarts"][0]["task"] == "worker:1" and meta["restarts"][0]["exit_code"] == 1
    log = (state / "runs" / "02-fake" / "latest" / "logs" / "worker-1.log").read_text()
    assert log.count("worker:1 starting") == 2 and "labctl: restarting worker:1" in log


def test_success_task_past_its_restart_limit_fails_the_run(labctl, state: Path) -> None:
    proc = labctl("run", "02", "--max-restarts", "1", env={"FAKE_FAIL_ALWAYS": "worker:0"})
    assert proc.returncode == 1
    assert "failed: worker:0 exit 1 (restart limit 1 reached)" in proc.stderr
    assert "last lines of worker:0" in proc.stderr and "failing on purpose" in proc.stderr
    assert "Traceback" not in proc.stderr
    meta = run_json(state, "02-fake")
    assert meta["status"] == "failed" and meta["failed_task"] == "worker:0"


def test_exit_code_2_is_never_restarted(labctl, state: Path) -> None:
    proc = labctl("run", "02", env={"FAKE_EXIT2": "worker:1"})
    assert proc.returncode == 1
    assert "worker:1 exited 2 (configuration error)" in proc.stderr
    assert tasks_by_name(run_json(state, "02-fake"))["worker:1"]["restarts"] == 0


def test_kill_injects_faults_and_restarts_recover(labctl, state: Path) -> None:
    proc = labctl("run", "02", "--kill", "worker:1@50", "--kill", "ps:0@60",
                  "--steps", "300")
    assert proc.returncode == 0, proc.stderr
    meta = run_json(state, "02-fake")
    assert [(k["task"], k["step"]) for k in meta["kills"]] == [("worker:1", 50), ("ps:0", 60)]
    assert all(k["global_step"] >= k["step"] for k in meta["kills"])
    restarted = {(r["task"], r["exit_code"]) for r in meta["restarts"]}
    assert {("worker:1", -9), ("ps:0", -9)} <= restarted
    assert tasks_by_name(meta)["worker:1"]["restarts"] == 1


def test_watchdog_names_the_silent_tasks(labctl, state: Path) -> None:
    started = time.monotonic()
    proc = labctl("run", "02", "--stall-timeout", "2", env={"FAKE_HANG": "worker:0,worker:1"})
    assert proc.returncode == 1
    assert time.monotonic() - started < 15
    assert "stalled: global step stuck at 10 for 2 s; not reporting: worker:0 (running), " \
           "worker:1 (running)" in proc.stderr
    assert run_json(state, "02-fake")["reason"].startswith("stalled")


def test_watchdog_names_a_dead_task_that_never_reported(labctl, state: Path) -> None:
    proc = labctl("run", "02", "--stall-timeout", "2", "--kill", "ps:0@10", "--max-restarts", "0",
                  env={"FAKE_HANG": "worker:0,worker:1"})
    assert proc.returncode == 1
    assert "not reporting: worker:0 (running), worker:1 (running), ps:0 (failed)" in proc.stderr
    assert "last lines of ps:0" in proc.stderr  # the dead task's output, not a hung worker's


def test_progressless_lab_has_an_overall_timeout(labctl) -> None:
    proc = labctl("launch", "--workers", "1", "--timeout", "2", "--", "sleep", "30")
    assert proc.returncode == 1 and "timed out after 2 s" in proc.stderr


def test_tasks_ignoring_sigterm_and_grandchildren_are_killed(labctl, state: Path) -> None:
    proc = labctl("run", "02", env={"FAKE_IGNORE_TERM": "ps:0",
                                    "FAKE_GRANDCHILD": "ps:0,worker:1"})
    assert proc.returncode == 0, proc.stderr
    assert "ps:0 ignored SIGTERM: killing it" in proc.stdout
    output = state / "runs" / "02-fake" / "latest" / "output"
    pidfiles = list(output.glob("grandchild-*.pid"))
    assert len(pidfiles) == 2
    for pidfile in pidfiles:
        assert not procs.running(int(pidfile.read_text()))


def _wait_for_tasks(state: Path, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(leftovers(state)) < count:
        assert time.monotonic() < deadline, "tasks did not start"
        time.sleep(0.1)


def test_ctrl_c_stops_every_task(state: Path) -> None:
    proc = start(state, "run", "02", env={"FAKE_HANG": "worker:0"})
    _wait_for_tasks(state, 3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and "interrupted" in err
    assert leftovers(state) == []
    assert run_json(state, "02-fake")["status"] == "interrupted"


def test_sigkilled_labctl_leaves_nothing_behind(labctl, state: Path, supervision: str) -> None:
    proc = start(state, "run", "02", env={"FAKE_HANG": "worker:0", "FAKE_GRANDCHILD": "ps:0"})
    _wait_for_tasks(state, 7 if supervision == "pipe" else 4)  # + a shim per task
    proc.kill()
    proc.communicate(timeout=10)
    time.sleep(0.5)
    left = leftovers(state)
    # Each shim, or the forked tasks' session (labctl's connection closed), killed its task's
    # whole process group, grandchild included.
    if supervision in ("pipe", "preload"):
        assert left == []
        assert "left by aborted runs" not in labctl("clean").stdout
        return
    # PR_SET_PDEATHSIG took the tasks; the ps's own child is reaped by the next labctl
    assert left and [p for p in left if Path(f"/proc/{p}/cmdline").read_bytes()
                     .startswith(b"sleep")] == left
    assert "aborted" in labctl("list", reaped=False).stdout
    assert "killed 1 process(es) left by aborted runs" in labctl("clean").stdout


def test_clean_refuses_while_a_run_is_active(labctl, state: Path) -> None:
    proc = start(state, "run", "02", env={"FAKE_HANG": "worker:0"})
    try:
        _wait_for_tasks(state, 3)
        refused = subprocess.run([*LABCTL, "clean"], capture_output=True, text=True, check=False,
                                 env=labctl_env(state))
        assert refused.returncode == 2 and "a run is active (02-fake/" in refused.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    assert labctl("clean").returncode == 0
    assert not (state / "runs").exists()


def test_logs_check_and_list(labctl, state: Path) -> None:
    assert labctl("run", "02", "-q").returncode == 0
    logs = labctl("logs", "02")
    assert "worker:1 | worker:1 starting" in logs.stdout and "ps:0 | ps:0 starting" in logs.stdout
    one = labctl("logs", "02", "--task", "worker:1")
    assert one.stdout.startswith("worker:1 starting") and "ps:0" not in one.stdout
    check = labctl("check", "fake")
    assert check.returncode == 0 and check.stdout.startswith("PASS:")
    listing = labctl("list").stdout
    assert "02  02-fake" in listing and "PASS" in listing and "cluster" in listing


def test_launch_any_program(labctl, state: Path, tmp_path: Path) -> None:
    program = FIXTURES / "labs" / "02-fake" / "fake.py"
    out = tmp_path / "out"
    out.mkdir()
    proc = labctl("launch", "--chief", "--ps", "1", "--workers", "2", "--", "python",
                  str(program), "--output-dir", str(out), "--steps", "50")
    assert proc.returncode == 0, proc.stderr
    meta = run_json(state, "launch")
    assert meta["success"] == "chief:0" and meta["status"] == "succeeded"
    assert set(meta["cluster"]) == {"chief", "ps", "worker"}
    # Prefixes are padded to the longest task name (worker:0) from the first line on.
    assert "chief:0  | chief:0 starting" in proc.stdout


def test_done_queue_tasks_end_by_themselves_and_restart_after_success(labctl, state) -> None:
    """worker:1 fails late, so it restarts after worker:0 succeeded; the ps waits for it."""
    proc = labctl("run", "05", env={"FAKE_FAIL_ONCE": "worker:1", "FAKE_FAIL_AT": "190"})
    assert proc.returncode == 0, proc.stderr
    assert "terminating" not in proc.stdout
    tasks = tasks_by_name(run_json(state, "05-queue"))
    assert tasks["worker:1"] == {**tasks["worker:1"], "status": "succeeded", "restarts": 1}
    assert tasks["ps:0"]["exit_code"] == 0 and tasks["ps:0"]["status"] == "succeeded"


def test_run_all_runs_every_local_lab_and_sums_up(labctl) -> None:
    proc = labctl("run", "all", "--check", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "==> 01-single" in proc.stdout and "==> 03-remote" not in proc.stdout
    assert "3/3 labs passed" in proc.stdout
    failed = labctl("run", "all", "-q", "--max-restarts", "0",
                    env={"FAKE_FAIL_ALWAYS": "worker:0"})
    assert failed.returncode == 1
    assert "1/3 labs passed" in failed.stdout and "failed: 02-fake, 05-queue" in failed.stdout
    # A skipped lab is neither passed nor failed: the summary says so and the exit code is 3.
    skipped = labctl("run", "all", "--check", "-q", env={"FAKE_CHECK_SKIP": "no GPU here"})
    assert skipped.returncode == 3, skipped.stderr
    assert "01-single                        succeeded  SKIP" in skipped.stdout
    assert "2/3 labs passed in" in skipped.stdout and "; skipped: 01-single" in skipped.stdout
    assert "SKIP" in labctl("list").stdout.split("01-single", 1)[1].splitlines()[0]


@pytest.mark.slow
def test_tensorboard_serves_the_run_output(labctl, state: Path) -> None:
    """With tensorboard installed it serves the run's output; without, a one-line hint."""
    import shutil
    import sys
    import urllib.request

    from labctl.ports import free_ports

    assert labctl("run", "02", "-q").returncode == 0
    (port,) = free_ports(1)
    if not (Path(sys.executable).parent / "tensorboard").is_file() and not shutil.which(
        "tensorboard"
    ):
        proc = labctl("tensorboard", "02", "--port", str(port))
        assert proc.returncode == 2 and "pip install tensorboard" in proc.stderr
        return
    server = start(state, "tensorboard", "02", "--port", str(port), env={})
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/logdir") as answer:
                    body = answer.read().decode()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no TensorBoard"
                time.sleep(1)
        assert "02-fake" in body and body.rstrip('"}').endswith("output")
    finally:
        server.terminate()
        server.communicate(timeout=30)
