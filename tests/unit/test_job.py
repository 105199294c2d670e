"""The Job controller in-process, over real child processes (LocalBackend), with short timers."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

from labctl import rundir, taskenv
from labctl.display import PlainDisplay
from labctl.job import Controller, JobSpec
from labctl.local import LocalBackend
from labctl.restart import RestartPolicy
from labctl.tasks import TaskSpec, build_tasks

PROGRAMS = {
    # the ps never ends by itself; worker:0 reports a few steps and succeeds
    "ps": "import time\nwhile True: time.sleep(1)",
    "worker": "import time\nfor s in range(1, 4):\n    print(f'PROGRESS step={s}')\n"
              "    time.sleep(0.05)",
}


def control(tmp_path: Path, monkeypatch, **spec_fields) -> tuple[Controller, io.StringIO]:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    tasks = build_tasks({"ps": 1, "worker": 1})
    fields = {"title": "t", "tasks": tasks, "success": TaskSpec("worker", 0),
              "shutdown": "done-queue", "policy": RestartPolicy(max_restarts=0),
              "stall_timeout_s": None, "timeout_s": None, **spec_fields}
    run = rundir.create("job")
    backend = LocalBackend(lambda t: [sys.executable, "-c", PROGRAMS[t.type]],
                           lambda t: taskenv.local({}), run.path)
    screen = io.StringIO()
    display = PlainDisplay("t", None, quiet=False, stream=screen)
    return Controller(JobSpec(**fields), backend, run, display, lambda snap: None), screen


def test_done_queue_safety_net_terminates_what_is_left(tmp_path: Path, monkeypatch) -> None:
    controller, screen = control(tmp_path, monkeypatch, after_success_grace_s=0.5)
    outcome = controller.run()
    assert outcome.status == "succeeded" and outcome.global_step == 3
    assert "ps:0 still running 0.5 s after success: terminating it" in screen.getvalue()
    states = {s.spec.name: s for s in controller.states.values()}
    assert states["ps:0"].status == "stopped" and states["ps:0"].exit_code == -15
    log = (controller.rundir.logs / "ps-0.log").read_text()
    assert "----- labctl: ps:0 still running" in log


def test_launcher_shutdown_stops_the_rest_at_once(tmp_path: Path, monkeypatch) -> None:
    controller, screen = control(tmp_path, monkeypatch, shutdown="launcher",
                                 after_success_grace_s=60)
    assert controller.run().status == "succeeded"
    assert "terminating" not in screen.getvalue()
    assert controller.states[TaskSpec("ps", 0)].exit_code == -15


def test_task_env_bypasses_grpc_proxies_for_loopback_peers(monkeypatch) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_grpc_proxy", "corp.internal")
    env = taskenv.local({})
    assert env["no_grpc_proxy"].split(",") == ["corp.internal", "127.0.0.1", "localhost"]
    assert "labs" in env["PYTHONPATH"]


def test_kill_run_kills_only_that_runs_marked_processes(tmp_path: Path) -> None:
    from labctl import procs

    def marked(run: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                env={**os.environ, procs.RUN_ENV: str(run)})

    mine, other = marked(tmp_path / "mine"), marked(tmp_path / "other")
    try:
        deadline = time.monotonic() + 10
        while len([r for r in procs.run_processes().values() if r.is_relative_to(tmp_path)]) < 2:
            assert time.monotonic() < deadline, "marked processes never showed up"
            time.sleep(0.05)
        assert procs.kill_run(tmp_path / "mine") == [mine.pid]
        assert mine.wait(timeout=5) == -9
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
