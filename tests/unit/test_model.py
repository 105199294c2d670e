"""Task model, TF_CONFIG, ports, restart policy, progress and --kill parsing: pure logic."""

from __future__ import annotations

import json
import socket

import pytest

from labctl import faults, restart
from labctl.errors import UsageError
from labctl.ports import free_ports
from labctl.progress import Progress, StepTracker, parse_progress
from labctl.restart import RestartPolicy, decide
from labctl.tasks import TaskSpec, build_tasks, find_task, parse_task
from labctl.tfconfig import cluster_spec, tf_config


def test_build_tasks_in_tfjob_order() -> None:
    tasks = build_tasks({"worker": 2, "ps": 1, "chief": 1, "evaluator": 1})
    assert [t.name for t in tasks] == ["chief:0", "ps:0", "worker:0", "worker:1", "evaluator:0"]
    assert tasks[3].slug == "worker-1"


def test_no_counts_is_one_single_process() -> None:
    (task,) = build_tasks({})
    assert (task.name, task.slug) == ("main", "main")


def test_build_tasks_rejects_unknown_types() -> None:
    with pytest.raises(UsageError, match="unknown task type"):
        build_tasks({"master": 1})


@pytest.mark.parametrize("text", ["worker", "worker:", "worker:-1", "gpu:0", "Worker:0", ""])
def test_parse_task_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="TYPE:INDEX"):
        parse_task(text)


def test_parse_task_and_single_aliases() -> None:
    assert parse_task("ps:12") == TaskSpec("ps", 12)
    assert parse_task("main") == parse_task("main:0") == TaskSpec("main", 0)


def test_find_task_lists_valid_names() -> None:
    with pytest.raises(UsageError, match="tasks are: ps:0, worker:0"):
        find_task(build_tasks({"ps": 1, "worker": 1}), "worker:1")


def test_tf_config_tfjob_format_with_local_ports() -> None:
    tasks = build_tasks({"ps": 1, "worker": 2})
    ports = {t: 5000 + i for i, t in enumerate(tasks)}
    cluster = cluster_spec(tasks, lambda t: f"127.0.0.1:{ports[t]}")
    assert cluster == {"ps": ["127.0.0.1:5000"], "worker": ["127.0.0.1:5001", "127.0.0.1:5002"]}
    config = json.loads(tf_config(cluster, TaskSpec("worker", 1)))
    assert config == {"cluster": cluster, "task": {"type": "worker", "index": 1}}


def test_tf_config_with_service_names() -> None:
    """The k8s target passes DNS names: the same builder, another host function."""
    tasks = build_tasks({"chief": 1, "worker": 1})
    cluster = cluster_spec(tasks, lambda t: f"job-{t.slug}.ns.svc:2222")
    assert cluster["chief"] == ["job-chief-0.ns.svc:2222"]
    assert "ps" not in cluster  # a type the job does not use is absent


def test_only_the_evaluator_sees_itself_in_the_cluster() -> None:
    tasks = build_tasks({"chief": 1, "ps": 1, "worker": 1, "evaluator": 1})
    cluster = cluster_spec(tasks, lambda t: f"{t.slug}:1")
    chief = json.loads(tf_config(cluster, TaskSpec("chief", 0)))["cluster"]
    evaluator = json.loads(tf_config(cluster, TaskSpec("evaluator", 0)))["cluster"]
    assert set(chief) == {"chief", "ps", "worker"}
    assert evaluator == cluster and evaluator["evaluator"] == ["evaluator-0:1"]


def test_tf_config_refuses_a_task_outside_the_cluster() -> None:
    cluster = cluster_spec(build_tasks({"worker": 1}), lambda t: "h:1")
    with pytest.raises(ValueError, match="not in the cluster"):
        tf_config(cluster, TaskSpec("worker", 1))


def test_single_process_has_no_cluster() -> None:
    assert cluster_spec(build_tasks({}), lambda t: "h:1") == {}


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_restart_policy_backoff_doubles_and_caps() -> None:
    policy = RestartPolicy(max_restarts=10, base_delay_s=1, max_delay_s=8)
    assert [policy.delay(n) for n in range(6)] == [1, 2, 4, 8, 8, 8]


def test_restart_decisions() -> None:
    policy = RestartPolicy(max_restarts=2)
    assert not decide(policy, 0, 0).restart
    exit2 = decide(policy, 2, 0)
    assert not exit2.restart and "configuration error" in exit2.reason
    killed = decide(policy, -9, 0)
    assert killed.restart and killed.delay_s == 1.0
    assert decide(policy, 1, 1).delay_s == 2.0
    assert not decide(policy, 1, 2).restart
    assert not decide(RestartPolicy(max_restarts=0), 1, 0).restart


def test_describe_exit() -> None:
    assert restart.describe_exit(-9) == "killed by SIGKILL"
    assert restart.describe_exit(3) == "exit 3"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("PROGRESS step=300 loss=0.41 accuracy=0.88", Progress(300, 0.41, 0.88)),
        ("PROGRESS step=7", Progress(7)),
        ("  PROGRESS step=7 accuracy=1  ", Progress(7, None, 1.0)),
        ("PROGRESS step=7 loss=nan", Progress(7, float("nan"))),
    ],
)
def test_parse_progress(line: str, expected: Progress) -> None:
    got = parse_progress(line)
    assert got is not None and got.step == expected.step
    assert got.accuracy == expected.accuracy


@pytest.mark.parametrize(
    "line",
    ["PROGRESS", "PROGRESS loss=1", "PROGRESS step=x", "progress step=1", "INFO PROGRESS step=1",
     "PROGRESS step=1.5", "PROGRESS step=1 loss=abc"],
)
def test_parse_progress_rejects(line: str) -> None:
    assert parse_progress(line) is None


def test_tracker_global_step_is_the_max_and_activity_resets_the_watchdog() -> None:
    w0, w1, ps = TaskSpec("worker", 0), TaskSpec("worker", 1), TaskSpec("ps", 0)
    tracker = StepTracker(started=100.0)
    assert not tracker.stalled(219.9, 60) and tracker.stalled(220.0, 60)  # start-up allowance
    tracker.report(w0, Progress(50, 0.5), 110.0)
    tracker.report(w1, Progress(40), 111.0)
    assert tracker.global_step == 50 and tracker.loss == 0.5
    tracker.report(w1, Progress(30, 0.9), 150.0)  # restored an older checkpoint: activity
    assert tracker.global_step == 50 and not tracker.stalled(200.0, 60)
    assert tracker.loss == 0.5  # the metrics of the task furthest ahead
    tracker.report(w0, Progress(50), 205.0)  # the same step again is no progress
    assert not tracker.stalled(209.9, 60) and tracker.stalled(210.0, 60)
    assert tracker.not_reporting([ps, w0, w1], 210.0, 60) == [w1]


def test_not_reporting_names_everyone_when_nobody_ever_reported() -> None:
    tasks = build_tasks({"ps": 1, "worker": 1})
    assert StepTracker(started=0.0).not_reporting(tasks, 61.0, 60) == tasks


def test_parse_kill() -> None:
    assert faults.parse_kill("worker:1@300") == faults.KillSpec(TaskSpec("worker", 1), 300)
    assert str(faults.parse_kill("ps:0@5")) == "ps:0@5"


@pytest.mark.parametrize("text", ["worker:1", "worker:1@", "@5", "worker:1@-3", "worker@3",
                                  "worker:1@3x", "gpu:0@3"])
def test_parse_kill_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        faults.parse_kill(text)


def test_kills_fall_due_once_the_global_step_passes() -> None:
    kills = [faults.parse_kill("worker:1@300"), faults.parse_kill("ps:0@500")]
    assert faults.due(kills, 299) == []
    assert faults.due(kills, 300) == kills[:1]
    assert faults.due(kills, 900) == kills


def test_check_output_parsing() -> None:
    from labctl.checks import parse_output

    passed = parse_output("noise\nPASS: value is 9\n", 0)
    assert passed.passed and passed.message == "PASS: value is 9" and passed.hint == ""
    failed = parse_output("FAIL: accuracy 0.5\nhint: train longer\n", 1)
    assert not failed.passed and failed.hint == "train longer"
    unusable = parse_output("error: /x is not a run directory", 2)
    assert not unusable.passed and unusable.message.startswith("FAIL: the check printed no")
    assert "not a run directory" in unusable.message
    assert not parse_output("PASS: but crashed", 1).passed
    skipped = parse_output("SKIP: no GPU\n", 3)
    assert (skipped.word, skipped.passed, skipped.message) == ("SKIP", False, "SKIP: no GPU")
    # A verdict whose exit code disagrees is a failure, whatever it says.
    assert parse_output("SKIP: no GPU", 0).message == "FAIL: the check said SKIP but exited 0"
    assert parse_output("PASS: fine", 3).word == "FAIL"
