"""Lab 15 without a cluster.

- The check's TensorBoard half against a real TensorBoard: lab 04's program trains briefly as
  local processes, the installed `tensorboard` serves its output, and a fake Api's proxy()
  forwards the check's requests to it over HTTP (what the API server's service proxy does).
- The throttling and Pending halves against recorded state: tasks files holding cgroup v2
  counters in the kernel's format, and Events as core/v1 serves the scheduler's.
- labkit's cgroup reader on a fake /proc and /sys/fs/cgroup; labctl's per-task CPU options,
  rendered and run against the fake cluster (a task left unscheduled does not hold the run up).

What only a cluster shows (the kubelet's CFS quota, the throttling itself, the scheduler's
wording on a real cluster) is in the README from upstream docs and source, unverified here."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

import kubernetes_validate
import pytest
from _fake_cluster import Attempt, FakeApi
from _manifests import by_kind, load
from test_k8s_cluster import async_scripts, progress, run_lab
from test_k8s_labs import LABS, module, run_dir

from labctl import versions
from labctl.cli import main as labctl_main
from labctl.k8s import manifests as m
from labctl.k8s import waits
from labctl.k8s.api import ClusterError
from labctl.k8s.render import render
from labctl.plan import plan_lab

sys.path.insert(0, str(LABS))
from labkit import report
from labkit.checkpoint import Checkpoint, latest
from labkit.checks import Failed, Run, step_of

LAB = LABS / "15-watching-training"
NS = "tf-15-20261203-103000"
PENDING_POD = "watch-worker-2-t6k3w"
# kube-scheduler's FitError text (pkg/scheduler/framework/types.go) with the reasons of the
# TaintToleration and NodeResourcesFit plugins, then DefaultPreemption's; the counts are a
# Vagrant cluster's (one tainted control plane, two workers).
TAINT = "1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"
PREEMPTION = (" preemption: 0/3 nodes are available: 1 Preemption is not helpful for "
              "scheduling, 2 No preemption victims found for incoming pod.")


def scheduler_says(reason: str) -> str:
    return f"0/3 nodes are available: {TAINT}, {reason}.{PREEMPTION}"


def cpu_stat(periods: int, throttled: int, throttled_usec: int) -> str:
    """cgroup v2 cpu.stat with the CPU controller enabled (Documentation/admin-guide/
    cgroup-v2.rst): the three usage counters, then the bandwidth ones."""
    return (f"usage_usec {periods * 10_000}\nuser_usec {periods * 9_000}\nsystem_usec "
            f"{periods * 1_000}\nnr_periods {periods}\nnr_throttled {throttled}\n"
            f"throttled_usec {throttled_usec}\nnr_bursts 0\nburst_usec 0\n")


THROTTLED = {"cpu.max": "10000 100000\n", "cpu.stat": cpu_stat(2694, 2611, 229_470_118)}
UNLIMITED = {"cpu.max": "200000 100000\n", "cpu.stat": cpu_stat(1850, 37, 1_204_331)}


def k8s_run(path: Path, *, limits: tuple[str, ...] = ("worker:1=100m",),
            requests: tuple[str, ...] = ("worker:2=64",),
            pods: dict[str, Any] | None = None, **meta: Any) -> Path:
    """run.json of a lab 15 run on the cluster, as labctl writes it."""
    recorded = {"ps:0": {"job": "watch-ps-0", "pods": [
                    {"name": "watch-ps-0-b7x9c", "phase": "Running", "node": "k8s-worker-1"}]},
                "worker:0": {"job": "watch-worker-0", "pods": [
                    {"name": "watch-worker-0-p2l4s", "phase": "Succeeded",
                     "node": "k8s-worker-2"}]},
                "worker:2": {"job": "watch-worker-2", "pods": [
                    {"name": PENDING_POD, "phase": "Pending", "exit_code": None,
                     "node": None}]}}
    return run_dir(path, {"lab": LAB.name, "target": "k8s", "status": "succeeded",
                          "namespace": NS, "args": {"steps": 20000, "dataset": "digits"},
                          "options": {"cpu_limit": list(limits), "cpu_request": list(requests)},
                          "pods": recorded if pods is None else pods, **meta})


def tasks(run: Path, **files: dict[str, Any]) -> Path:
    for stem, data in files.items():
        path = run / "output" / "tasks" / f"{stem.replace('_', '-')}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"task": stem.replace("_", "-"), **data}))
    return run


def worker(steps: int, rate: float, cgroup: dict[str, str] | None) -> dict[str, Any]:
    return {"local_steps": steps, "steps_per_sec": rate, **({"cgroup": cgroup} if cgroup else {})}


def scheduler(*messages: str, pod: str = PENDING_POD) -> FakeApi:
    api = FakeApi()
    for i, message in enumerate(messages):
        api._put({"kind": "Event", "metadata": {"name": f"{pod}.18c{i}", "namespace": NS},
                  "type": "Warning", "reason": "FailedScheduling", "message": message,
                  "involvedObject": {"kind": "Pod", "name": pod, "namespace": NS}})
    return api


@pytest.fixture
def check(monkeypatch: pytest.MonkeyPatch) -> Any:
    return module(LAB / "check.py", monkeypatch)


# --- 1. TensorBoard, real ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TensorBoardProxy(FakeApi):
    """proxy() as the API server's service proxy answers it, from a TensorBoard on this
    machine: the JSON reply, or the error Api.proxy raises for a reply that is not JSON."""

    def __init__(self, port: int, check: Any) -> None:
        super().__init__()
        self.port, self.check = port, check

    def proxy(self, namespace: str, service: str, port: int, path: str,
              body: dict[str, Any] | None = None) -> Any:
        assert (namespace, service, port, body) == (NS, self.check.SERVICE, self.check.PORT, None)
        try:
            with urlopen(f"http://127.0.0.1:{self.port}/{path}", timeout=10) as reply:
                return json.loads(reply.read())
        except HTTPError as err:
            raise ClusterError(f"cannot call GET {path} on service {service}: the reply is not "
                               f"JSON ({err.code})") from None


def serving(port: int, url: str, proc: subprocess.Popen[str], timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"TensorBoard exited {proc.returncode}"
        try:
            with urlopen(f"http://127.0.0.1:{port}/{url}", timeout=5) as reply:
                return json.loads(reply.read())
        except (URLError, ConnectionError):
            time.sleep(0.5)
    raise AssertionError(f"TensorBoard did not serve {url} within {timeout_s:g} s")


def only_loss(logdir: Path) -> None:
    """An event file with one scalar, in TensorFlow's own format (tensorboard's writer)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(logdir))
    for step in (1, 100, 200):
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=(
            summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss",
                                                                 simple_value=0.5)]))))
    writer.close()


@pytest.mark.slow
@pytest.mark.labs
def test_lab15_check_reads_a_real_tensorboard_serving_lab04s_real_run(
        tmp_path: Path, check: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Enough steps that the slower worker, started last on a busy machine, still trains the
    # check's minimum (check.MEASURED): at 300 one trained 92 in CI.
    steps = 1000
    run = k8s_run(tmp_path / "run", args={"steps": steps, "dataset": "digits"})
    output = run / "output"
    only_loss(output / "partial")
    port = free_port()
    exe = Path(sys.executable).with_name("tensorboard")
    log = (tmp_path / "tensorboard.log").open("w")
    board = subprocess.Popen([str(exe), "--logdir", str(output), "--host", "127.0.0.1",
                              "--port", str(port), "--load_fast=false", "--reload_interval=1"],
                             stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        # lab 04's program as local processes (1 ps, 2 workers) while TensorBoard starts
        env = {**os.environ, "LABCTL_STATE_DIR": str(tmp_path / "state")}
        proc = subprocess.run(
            [sys.executable, "-m", "labctl", "launch", "--ps", "1", "--workers", "2", "-q", "--",
             "python", str(LABS / "04-between-graph-async" / "train.py"), "--output-dir",
             str(output), "--steps", str(steps)],
            env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

        step = step_of(Checkpoint(latest(output / "checkpoints")))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until TensorBoard has read the last summaries
            tags = serving(port, "data/plugin/scalars/tags", board)
            if set(check.TAGS) <= set(tags.get(check.TB_RUN, {})):
                points = serving(port, "data/plugin/scalars/scalars?run=checkpoints&tag=loss",
                                 board)
                if points[-1][1] >= step - check.REACH:
                    break
            time.sleep(1)
        api = TensorBoardProxy(port, check)
        verdict = check.scalars(api, NS, step)
        assert verdict.startswith("TensorBoard serves loss, accuracy, global_step/sec of run "
                                  "checkpoints to step ") and f"(checkpoint at {step})" in verdict

        # The whole check on this run: the real files, with the counters a cgroup v2 node
        # would have left (this machine has none) on the slower worker, and the scheduler's
        # events on the Pending one.
        files = {s: json.loads((output / "tasks" / f"{s}.json").read_text())
                 for s in ("worker-0", "worker-1")}
        slow = min(files, key=lambda s: files[s]["steps_per_sec"])
        for stem, data in files.items():
            data["cgroup"] = THROTTLED if stem == slow else UNLIMITED
            (output / "tasks" / f"{stem}.json").write_text(json.dumps(data))
        k8s_run(run, limits=(f"{slow.replace('-', ':')}=100m",),
                args={"steps": steps, "dataset": "digits"})
        api.objects.update(scheduler(scheduler_says("2 Insufficient cpu")).objects)
        from labctl.k8s import api as k8s_api

        monkeypatch.setattr(k8s_api, "Api", lambda *_: api)
        verdict = check.check(Run(run))
        assert f"{slow} (limit 100m, cpu.max 10000) throttled in 2611 of 2694" in verdict
        assert "worker:2 (request 64) stayed Pending: 0/3 nodes are available" in verdict

        # The same TensorBoard, asked for a run that lacks two of the tags, or for steps past
        # the end of this one: each fails, naming what is missing.
        monkeypatch.setattr(check, "TB_RUN", "partial")
        with pytest.raises(Failed, match=r"TensorBoard has no accuracy, global_step/sec for run "
                                         r"'partial' \(it has \{"):
            check.scalars(api, NS, step)
        monkeypatch.setattr(check, "TB_RUN", "checkpoints")
        with pytest.raises(Failed, match=rf"TensorBoard's loss ends at step \d+, the run's "
                                         rf"checkpoint is at step {step + 1000}"):
            check.scalars(api, NS, step + 1000)
    finally:
        board.terminate()
        board.wait(timeout=30)
        log.close()


def test_a_tensorboard_that_does_not_answer_is_named_with_how_to_look(check: Any) -> None:
    class Down(FakeApi):
        def proxy(self, *_: Any, **__: Any) -> Any:
            raise ClusterError("cannot call GET data/plugin/scalars/tags on service tensorboard "
                               "in namespace ns: 503 no endpoints available for service "
                               '"tensorboard"')

    with pytest.raises(check.checks.Failed) as caught:
        check.scalars(Down(), NS, 20001)
    assert "cannot ask TensorBoard: " in caught.value.reason and "503 no endpoints" in \
        caught.value.reason
    assert f"kubectl -n {NS} get pods -l app=tensorboard" in caught.value.hint


# --- 2. the throttled worker, 3. the Pending one: recorded state --------------------------------
def experiment(path: Path, **override: dict[str, Any]) -> Path:
    """Step 3's run: worker 1 limited to 100m, worker 2 Pending; the workers' files."""
    files = {"worker_0": worker(18595, 101.3, UNLIMITED),
             "worker_1": worker(1406, 9.8, THROTTLED)} | override
    return tasks(k8s_run(path), **files)


def test_the_experiment_passes(tmp_path: Path, check: Any) -> None:
    run = Run(experiment(tmp_path / "run"))
    assert check.throttled(run, check.accounted(run, 20001)) == (
        "worker-1 (limit 100m, cpu.max 10000) throttled in 2611 of 2694 CFS periods for "
        "229.5 s, 9.8 local steps/s against at least 101.3")
    api = scheduler(scheduler_says("2 Insufficient cpu"))
    assert check.pending(api, run, NS) == ("worker:2 (request 64) stayed Pending: "
                                           + scheduler_says("2 Insufficient cpu"))


@pytest.mark.parametrize(("override", "failure"), [
    ({"worker_1": worker(1406, 9.8, {**THROTTLED, "cpu.stat": cpu_stat(2694, 0, 0)})},
     "the kernel never throttled worker-1: nr_throttled 0 of 2694 periods"),
    ({"worker_1": worker(1406, 9.8, {**THROTTLED, "cpu.max": "max 100000\n"})},
     "worker-1 ran under cpu.max 'max 100000', not the quota 10000 of its 100m limit"),
    ({"worker_1": worker(1406, 120.0, THROTTLED)},
     "worker-1 (limit 100m) trained 120 steps/s, no fewer than worker-0's 101.3"),
    ({"worker_1": worker(1406, 9.8, None)},
     "tasks/worker-1.json holds no cgroup counters: its node has no cgroup v2"),
    ({"worker_1": worker(406, 9.8, THROTTLED)},
     "the workers' files count 19001 local steps, the checkpoint 20001 global steps"),
    ({"worker_0": worker(19999, 101.3, UNLIMITED), "worker_1": worker(2, 9.8, THROTTLED)},
     "worker-1 (limit 100m) trained only 2 local steps: too few to tell its speed"),
])
def test_a_worker_that_was_not_throttled_fails(override: dict[str, Any], failure: str,
                                               tmp_path: Path, check: Any) -> None:
    run = Run(experiment(tmp_path / "run", **override))
    with pytest.raises(Failed) as caught:
        check.throttled(run, check.accounted(run, 20001))
    assert caught.value.reason == failure


def test_a_throttled_worker_that_never_finished_or_no_limit_at_all_fails(
        tmp_path: Path, check: Any) -> None:
    run = Run(tasks(k8s_run(tmp_path / "gone"), worker_0=worker(20001, 101.3, UNLIMITED)))
    with pytest.raises(Failed, match=r"worker-1 \(CPU limit 100m\) wrote no "
                                     r"tasks/worker-1.json: it never finished"):
        check.throttled(run, check.accounted(run, 20001))
    run = Run(tasks(k8s_run(tmp_path / "plain", limits=()),
                    worker_0=worker(10001, 101.3, UNLIMITED), worker_1=worker(10000, 99.0, None)))
    with pytest.raises(Failed, match="no worker of this run had a CPU limit") as caught:
        check.throttled(run, check.accounted(run, 20001))
    assert "--cpu-limit worker:1=100m" in caught.value.hint


@pytest.mark.parametrize(("messages", "failure"), [
    ((scheduler_says("2 Insufficient memory"),),
     f"worker:2's pod {PENDING_POD} was Pending for another reason: "
     + scheduler_says("2 Insufficient memory")),
    (("0/3 nodes are available: 3 node(s) had untolerated taint {gpu: only}. preemption: 0/3 "
      "nodes are available: 3 Preemption is not helpful for scheduling.",),
     f"worker:2's pod {PENDING_POD} was Pending for another reason: 0/3 nodes are available: "
     "3 node(s) had untolerated taint {gpu: only}."),
    ((), f"no FailedScheduling event on worker:2's pod {PENDING_POD}"),
])
def test_a_pod_pending_for_another_reason_fails(messages: tuple[str, ...], failure: str,
                                                tmp_path: Path, check: Any) -> None:
    run = Run(experiment(tmp_path / "run"))
    with pytest.raises(Failed) as caught:
        check.pending(scheduler(*messages), run, NS)
    assert caught.value.reason.startswith(failure)


def test_a_task_that_was_scheduled_or_no_request_at_all_fails(tmp_path: Path,
                                                              check: Any) -> None:
    ran = {"worker:2": {"job": "watch-worker-2", "pods": [
        {"name": PENDING_POD, "phase": "Succeeded", "node": "k8s-worker-1"}]}}
    run = Run(k8s_run(tmp_path / "ran", pods=ran))
    with pytest.raises(Failed, match="worker:2 \\(CPU request 64\\) was scheduled, on "
                                     "k8s-worker-1"):
        check.pending(scheduler(scheduler_says("2 Insufficient cpu")), run, NS)
    run = Run(k8s_run(tmp_path / "none", requests=()))
    with pytest.raises(Failed, match="no task of this run had a CPU request of its own"):
        check.pending(scheduler(), run, NS)


def test_a_run_off_the_cluster_is_refused_first(tmp_path: Path, check: Any) -> None:
    run = Run(run_dir(tmp_path / "run", {"lab": LAB.name, "target": "local",
                                         "status": "succeeded"}))
    with pytest.raises(Failed, match="this run used the local target") as caught:
        check.check(run)
    assert "--cpu-limit worker:1=100m --cpu-request worker:2=64" in caught.value.hint


# --- labkit: the worker's copy of its cgroup's counters -----------------------------------------
def tree(root: Path, files: dict[str, str]) -> tuple[str, str]:
    """A fake procfs and cgroup2 mount under root: (proc, cgroup root)."""
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return str(root / "proc"), str(root / "cgroup")


@pytest.mark.parametrize("own, where", [
    ("0::/\n", ""),  # a container's own cgroup namespace: its cgroup is the root it sees
    ("0::/kubepods.slice/kubepods-burstable.slice/x.slice/cri-containerd-1.scope\n",
     "kubepods.slice/kubepods-burstable.slice/x.slice/cri-containerd-1.scope/"),  # the host's
])
def test_cgroup_cpu_reads_the_tasks_own_cgroup(own: str, where: str, tmp_path: Path) -> None:
    proc, root = tree(tmp_path, {"proc/self/cgroup": own,
                                 f"cgroup/{where}cpu.max": THROTTLED["cpu.max"],
                                 f"cgroup/{where}cpu.stat": THROTTLED["cpu.stat"]})
    assert report.cgroup_cpu(proc, root) == THROTTLED
    # cgroup v1 only (no `0::` line), or no cpu controller files: nothing to copy
    proc, root = tree(tmp_path / "v1", {"proc/self/cgroup": "4:cpu,cpuacct:/x\n"})
    assert report.cgroup_cpu(proc, root) is None
    proc, root = tree(tmp_path / "bare", {"proc/self/cgroup": own})
    assert report.cgroup_cpu(proc, root) is None


def test_write_task_keeps_the_counters_beside_the_steps(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "cgroup_cpu", lambda: THROTTLED)
    report.write_task(tmp_path, "worker-1", report.Progress(), 7)
    written = json.loads((tmp_path / "tasks" / "worker-1.json").read_text())
    assert written["local_steps"] == 7 and written["cgroup"] == THROTTLED
    monkeypatch.setattr(report, "cgroup_cpu", lambda: None)
    report.write_task(tmp_path, "worker-0", report.Progress(), 7)
    assert "cgroup" not in json.loads((tmp_path / "tasks" / "worker-0.json").read_text())


# --- labctl: one task's CPU, per run -----------------------------------------------------------
def resources_of(**where: Any) -> dict[str, dict[str, dict[str, str]]]:
    lab = load("15")
    docs = render(lab, plan_lab(lab, {}, {}, []), m.Placement(**where))
    for doc in docs:
        kubernetes_validate.validate(doc, versions.get("kube_version"), strict=True)
    return {name: job["spec"]["template"]["spec"]["containers"][0]["resources"]
            for name, job in by_kind(docs, "Job").items()}


def test_a_cpu_limit_or_request_changes_that_task_only() -> None:
    found = resources_of(cpu_limits={"worker:1": "100m"}, cpu_requests={"worker:2": "64"})
    assert found["watch-worker-1"] == {"requests": {"cpu": "100m", "memory": "768Mi"},
                                       "limits": {"cpu": "100m", "memory": "2Gi"}}
    assert found["watch-worker-2"] == {"requests": {"cpu": "64", "memory": "768Mi"},
                                       "limits": {"cpu": "64", "memory": "2Gi"}}
    assert found["watch-worker-0"] == found["watch-ps-0"] == {"requests": m.REQUESTS,
                                                              "limits": m.LIMITS}
    # within the defaults, the other side stays; both given, both kept
    assert resources_of(cpu_limits={"worker:1": "500m"})["watch-worker-1"]["requests"] == \
        m.REQUESTS
    both = resources_of(cpu_limits={"ps:0": "1.5"}, cpu_requests={"ps:0": "500m"})["watch-ps-0"]
    assert (both["requests"]["cpu"], both["limits"]["cpu"]) == ("500m", "1.5")
    with pytest.raises(m.RenderError, match="ps:0: the CPU request 2 is above its limit 1"):
        resources_of(cpu_limits={"ps:0": "1"}, cpu_requests={"ps:0": "2"})


@pytest.mark.parametrize(("argv", "message"), [
    (["--cpu-limit", "worker:1=0.1m"], "bad --cpu-limit 'worker:1=0.1m': '0.1m' is not a CPU"),
    (["--cpu-limit", "worker:1=0"], "a CPU quantity must be more than 0"),
    (["--cpu-request", "worker:7=1"], "no task 'worker:7' in this job"),
    (["--cpu-request", "worker:1"], "bad --cpu-request 'worker:1': expected TASK=CPU"),
    (["--cpu-limit", "worker:1=1", "--cpu-limit", "worker:1=2"], "--cpu-limit names worker:1 "
                                                                 "twice"),
])
def test_bad_cpu_options_are_one_line(argv: list[str], message: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert labctl_main(["render", "15", *argv]) == 2
    assert message in capsys.readouterr().err


def test_cpu_options_render_and_are_refused_off_the_cluster(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert labctl_main(["render", "09", "--cpu-limit", "worker:1=100m"]) == 0
    assert "cpu: 100m" in capsys.readouterr().out
    assert labctl_main(["run", "04", "--target", "docker", "--cpu-request",
                        "worker:1=64"]) == 2
    assert "does not use --cpu-request (k8s)" in capsys.readouterr().err


def unschedulable(name: str, job: str) -> dict[str, Any]:
    """A pod as the API server shows it after the scheduler found no node: no nodeName, and
    PodScheduled False with the FitError (pkg/scheduler/schedule_one.go)."""
    return {"kind": "Pod", "metadata": {
        "name": name, "namespace": "ns",
        "labels": {"batch.kubernetes.io/job-name": job, m.LABEL_RUN: "r"}},
        "spec": {}, "status": {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": scheduler_says("2 Insufficient cpu")}]}}


def test_wait_started_neither_waits_for_nor_gives_up_on_an_unawaited_job() -> None:
    api = FakeApi()
    api.create({"kind": "Namespace", "metadata": {"name": "ns"}})
    api._put(unschedulable("w-2-abc", "w-2"))
    starting = api._put({"kind": "Pod", "metadata": {"name": "w-0-abc", "namespace": "ns",
                         "labels": {"batch.kubernetes.io/job-name": "w-0", m.LABEL_RUN: "r"}},
                         "spec": {"nodeName": "node-1"}, "status": {"phase": "Pending"}})
    now = [0.0]

    def tick(_: float) -> None:  # w-0 pulls its image for 4 minutes, past UNSCHEDULABLE_S
        now[0] += 30
        if now[0] >= 4 * 60:
            starting["status"]["phase"] = "Running"

    waits.wait_started(api, "ns", f"{m.LABEL_RUN}=r", ["w-0"], lambda _t: None,
                       clock=lambda: now[0], sleep=tick, unawaited=["w-2"])
    assert now[0] == 4 * 60
    # the same pod of an awaited Job fails the run, as before
    now[0] = 0.0
    starting["status"]["phase"] = "Pending"
    with pytest.raises(ClusterError, match=r"pod w-2-abc cannot be scheduled: 0/3 nodes are "
                                           r"available: .*2 Insufficient cpu"):
        waits.wait_started(api, "ns", f"{m.LABEL_RUN}=r", ["w-0", "w-2"], lambda _t: None,
                           clock=lambda: now[0], sleep=tick)


class Unschedulable(FakeApi):
    """The fake cluster, where the pods of some Jobs never find a node."""

    def __init__(self, jobs: set[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unplaced = jobs

    def _start_pod(self, job: dict[str, Any], attempt: Attempt) -> dict[str, Any]:
        pod = super()._start_pod(job, attempt)
        if job["metadata"]["name"] in self.unplaced:
            with self.lock:
                pod["spec"].pop("nodeName")
                pod["status"] = unschedulable(pod["metadata"]["name"], "")["status"]
        return pod


def test_a_run_goes_on_without_a_task_that_asked_for_too_much_cpu(fake_labs: Path) -> None:
    scripts = async_scripts(**{"fake-async-worker-1": [Attempt(
        progress(4), waiting="(never scheduled)")]})
    api = Unschedulable({"fake-async-worker-1"}, scripts=scripts)
    done = run_lab(api, cpu_requests={"worker:1": "64"})
    assert done.outcome.status == "succeeded", done.outcome
    record = done.run.read("run.json")
    (pod,) = record["pods"]["worker:1"]["pods"]
    assert (pod["phase"], pod["node"]) == ("Pending", None)
    job = api.objects.get(("Job", record["namespace"], "fake-async-worker-1"))
    assert job is None or "deletionTimestamp" in job["metadata"]  # ended with the ps
