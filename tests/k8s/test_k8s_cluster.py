"""`labctl run --target k8s` logic against an in-memory fake cluster (tests/k8s/_fake_cluster.py).

A mock: this proves labctl's decisions (preflight before anything is created, rollback, which
Jobs are deleted when, what a task's exit code is, results copied back, clean-up by label) under
the behaviour the fake encodes. It is not evidence that a real cluster behaves so.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _fake_cluster import Attempt, FakeApi, _later
from _manifests import load

from labctl import rundir
from labctl.errors import UsageError
from labctl.job import JobSpec
from labctl.k8s import backend, cluster, collect, lifecycle, status, waits
from labctl.k8s import manifests as m
from labctl.k8s.api import ClusterError, Forbidden
from labctl.plan import plan_lab
from labctl.record import RunRecord
from labctl.restart import RestartPolicy

RESULTS = json.dumps({"lab": "04-fake-async", "test_accuracy": 0.97, "global_step": 20})


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status, "POLL_S", 0.02)


def progress(*steps: int) -> list[str]:
    return [f"PROGRESS step={s} loss=0.5 accuracy=0.9" for s in steps]


def async_scripts(**override: list[Attempt]) -> dict[str, list[Attempt]]:
    """Lab 04's shape: workers train and write results; the ps ends when both are done."""
    scripts = {
        "fake-async-worker-0": [Attempt(["starting", *progress(5, 10, 15, 20)],
                                        files={"results.json": RESULTS,
                                               "tasks/worker-0.json": "{}"})],
        "fake-async-worker-1": [Attempt(progress(4, 8, 12, 16, 20),
                                        files={"tasks/worker-1.json": "{}"})],
        "fake-async-ps-0": [Attempt(["ps up"], wait_for=("fake-async-worker-0",
                                                          "fake-async-worker-1"))],
    }
    return scripts | override


def run_lab(api: FakeApi, ident: str = "04", kills: tuple[str, ...] = (), restarts: int = 3,
            namespace: str | None = None, stall_s: float = 20.0,
            deadline_s: int | None = None, **options: Any) -> cluster.K8sRun:
    lab = load(ident)
    plan = plan_lab(lab, {}, {}, list(kills))
    spec = JobSpec(title=lab.name, tasks=plan.tasks, success=lab.success_task,
                   shutdown=lab.shutdown, policy=RestartPolicy(max_restarts=restarts),
                   stall_timeout_s=stall_s, timeout_s=None, kills=plan.kills,
                   after_success_grace_s=2.0)
    return cluster.run(lab, plan, spec, RunRecord(lab.name), quiet=True, namespace=namespace,
                       api_factory=lambda: api, deadline_s=deadline_s, **options)


def leftovers(api: FakeApi, run_id: str) -> list[Any]:
    """What a run left that is not being deleted (a deleted namespace terminates a while)."""
    return [k for k, o in api.objects.items()
            if o["metadata"].get("labels", {}).get(m.LABEL_RUN) == run_id
            and "deletionTimestamp" not in o["metadata"]]


def live(api: FakeApi, kind: str) -> list[dict[str, Any]]:
    return [o for o in api.list(kind) if "deletionTimestamp" not in o["metadata"]]


def test_a_run_succeeds_collects_results_and_cleans_up_by_label(fake_labs: Path) -> None:
    api = FakeApi(scripts=async_scripts())
    done = run_lab(api)
    assert done.outcome.status == "succeeded", done.outcome
    record = done.run.read("run.json")
    ns = record["namespace"]
    assert ns == f"tf-04-{done.run.run_id}" and record["namespace_created"]
    assert record["target"] == "k8s" and record["status"] == "succeeded"
    assert record["cluster"]["worker"] == [f"fake-async-worker-{i}.{ns}.svc:2222"
                                           for i in range(2)]
    # Created in order: namespace, programs, volume, Services, then Jobs.
    kinds = [c.split("/")[0] for c in api.made("create")]
    assert kinds[:3] == ["Namespace", "ConfigMap", "PersistentVolumeClaim"]
    assert kinds[3:6] == ["Service"] * 3 and kinds[6:9] == ["Job"] * 3
    # Results came back from the volume through the collector pod, which is gone again.
    assert json.loads((done.run.output / "results.json").read_text())["test_accuracy"] == 0.97
    assert (done.run.output / "tasks" / "worker-1.json").is_file()
    assert "Pod/fake-async-collect" in api.made("delete")
    # Logs are per task with the pods' lines; the ps ended by itself (done-queue).
    assert "starting" in (done.run.logs / "worker-0.log").read_text()
    assert not any(d.startswith("Job/") for d in api.made("delete"))
    tasks = {t["name"]: t for t in record["tasks"]}
    assert tasks["ps:0"]["status"] == "succeeded"
    # Clean: everything of the run goes, the per-run namespace too, nothing else.
    deleted = lifecycle.clean(done.run, api=api, shared=True)
    assert f"Namespace/{ns}" in deleted
    assert leftovers(api, done.run.run_id) == []
    assert api.read("StorageClass", m.STORAGE_CLASS) is not None


def test_unreachable_cluster_fails_before_anything_exists(fake_labs: Path) -> None:
    api = FakeApi(reachable=False)
    with pytest.raises(ClusterError, match="cannot reach the Kubernetes API"):
        run_lab(api)
    assert rundir.latest("04-fake-async") is None
    assert api.made("create") == []


def test_missing_storage_class_is_one_clear_error_and_creates_nothing(fake_labs: Path) -> None:
    api = FakeApi(storage_classes=())
    with pytest.raises(ClusterError, match=r"no StorageClass nfs-client: provision it with "
                                           r"playbooks/storage\.yml"):
        run_lab(api)
    assert api.made("create") == []
    assert rundir.latest("04-fake-async").read("run.json")["status"] == "failed"


def test_no_gpu_capacity_skips_the_gpu_lab_cleanly(fake_labs: Path) -> None:
    api = FakeApi(runtime_classes=("nvidia",), gpus=0)
    done = run_lab(api, "10")
    assert done.outcome.status == "skipped" and "nvidia.com/gpu" in (done.skipped or "")
    assert done.run.read("run.json")["status"] == "skipped"
    assert api.made("create") == []


def test_gpu_capacity_without_runtime_class_is_an_error(fake_labs: Path) -> None:
    api = FakeApi(gpus=1)
    with pytest.raises(ClusterError, match="no RuntimeClass nvidia"):
        run_lab(api, "10")
    assert api.made("create") == []


def test_name_clash_in_an_attendee_namespace_creates_nothing(fake_labs: Path) -> None:
    api = FakeApi()
    api.create({"kind": "Namespace", "metadata": {"name": "alice"}})
    api.create({"kind": "Service", "metadata": {"name": "fake-async-ps-0", "namespace": "alice",
                                                "labels": {m.LABEL_RUN: "earlier",
                                                           m.LABEL_LAB: "04-fake-async"}}})
    before = len(api.made("create"))
    with pytest.raises(ClusterError, match=r"name clash: Service fake-async-ps-0 already exists "
                                           r"in namespace alice \(made by 04-fake-async run "
                                           r"earlier\): `labctl clean 04`"):
        run_lab(api, namespace="alice")
    assert len(api.made("create")) == before


def test_missing_attendee_namespace_is_an_error(fake_labs: Path) -> None:
    with pytest.raises(ClusterError, match="namespace bob does not exist"):
        run_lab(FakeApi(), namespace="bob")


def test_rbac_refusal_rolls_back_everything_created(fake_labs: Path) -> None:
    api = FakeApi(forbid={("create", "Job")})
    with pytest.raises(Forbidden, match="RBAC: not allowed to create jobs"):
        run_lab(api)
    created = api.made("create")
    assert created and api.made("delete") == list(reversed(created))
    assert live(api, "Namespace") == []


def test_pods_that_cannot_start_fail_the_run_and_leave_nothing(fake_labs: Path) -> None:
    api = FakeApi(scripts=async_scripts(**{
        "fake-async-worker-1": [Attempt(waiting="ImagePullBackOff")]}))
    with pytest.raises(ClusterError, match=r"pod fake-async-worker-1-\d+ cannot pull image "
                                           + re.escape(m.tf_image()) + r" from docker\.io "
                                           r"\(ImagePullBackOff: pull access denied\): pre-pull"):
        run_lab(api)
    assert api.made("delete")[-1].startswith("Namespace/tf-04-")
    assert live(api, "Namespace") == [] and api.list("Job") == []
    assert rundir.latest("04-fake-async").read("run.json")["status"] == "failed"


def test_a_failing_task_fails_the_run_after_the_jobs_backoff(fake_labs: Path) -> None:
    api = FakeApi(scripts=async_scripts(**{
        "fake-async-worker-0": [Attempt(["Traceback: boom"], exit_code=1)]}))
    done = run_lab(api, restarts=1)
    assert done.outcome.status == "failed"
    assert done.outcome.failed_task == "worker:0"
    log = (done.run.logs / "worker-0.log").read_text()
    assert log.count("Traceback: boom") == 2  # backoffLimit 1: two pods
    assert "BackoffLimitExceeded" in log
    # The run's remaining Jobs (ps, worker 1) were deleted; nothing is left running.
    deleted = api.made("delete")
    assert "Job/fake-async-ps-0" in deleted


def test_exit_2_fails_at_once_through_pod_failure_policy(fake_labs: Path) -> None:
    api = FakeApi(scripts=async_scripts(**{
        "fake-async-worker-1": [Attempt(["error: TF_CONFIG bad"], exit_code=2)]}))
    done = run_lab(api)
    assert done.outcome.status == "failed"
    assert done.outcome.failed_task == "worker:1"
    assert "exited 2" in done.outcome.reason
    assert (done.run.logs / "worker-1.log").read_text().count("TF_CONFIG bad") == 1


def test_kill_evicts_the_pod_and_the_replacement_rejoins(fake_labs: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    worker1 = [Attempt(progress(4, 8, 12, 16, 20), every_s=0.3),
               Attempt(["rejoined", *progress(22, 24)], files={"tasks/worker-1.json": "{}"})]
    api = FakeApi(scripts=async_scripts(**{
        "fake-async-worker-0": [Attempt(progress(5, 10, 15, 20, 25, 30), every_s=0.3,
                                        files={"results.json": RESULTS})],
        "fake-async-worker-1": worker1}))
    # backoffLimit 0: only an eviction (DisruptionTarget, ignored by the podFailurePolicy)
    # leaves the Job alive; a plain DELETE would count as its one allowed failure.
    done = run_lab(api, kills=("worker:1@8",), restarts=0)
    assert done.outcome.status == "succeeded", done.outcome
    evicted = [c for c in api.calls if c[0] == "evict"]
    assert len(evicted) == 1
    deleted_pods = [d for d in api.made("delete") if d.startswith("Pod/fake-async-worker-1")]
    assert len(deleted_pods) == 1
    log = (done.run.logs / "worker-1.log").read_text()
    replaced = log.index("----- labctl: pod fake-async-worker-1-")
    assert "replaces" in log[replaced:] and "rejoined" in log[replaced:]
    pods = done.run.read("run.json")["pods"]["worker:1"]["pods"]
    assert len(pods) == 2
    # Lab 09's check finds exactly this in the log.
    import importlib.util

    monkeypatch.syspath_prepend(str(fake_labs))  # its labkit

    spec = importlib.util.spec_from_file_location(
        "check09", Path(__file__).resolve().parents[2] / "labs" /
        "09-distributed-training-on-kubernetes" / "check.py")
    check09 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check09)
    assert check09.rejoined(done.run.logs / "worker-1.log") == pods[1]["name"]


def test_launcher_shutdown_deletes_the_servers_after_success(fake_labs: Path) -> None:
    api = FakeApi(scripts={
        "fake-strategy-chief-0": [Attempt(progress(10, 20), files={"results.json": RESULTS})],
        "fake-strategy-ps-0": [Attempt(["ps serving"], forever=True)],
        "fake-strategy-worker-0": [Attempt(["worker serving"], forever=True)],
    })
    done = run_lab(api, "06")
    assert done.outcome.status == "succeeded", done.outcome
    deleted = api.made("delete")
    assert {"Job/fake-strategy-ps-0", "Job/fake-strategy-worker-0"} <= set(deleted)
    assert "Job/fake-strategy-chief-0" not in deleted  # finished Jobs stay until `labctl clean`
    tasks = {t["name"]: t["status"] for t in done.run.read("run.json")["tasks"]}
    assert tasks == {"chief:0": "succeeded", "ps:0": "stopped", "worker:0": "stopped"}


def test_a_job_past_its_deadline_fails_the_run_and_says_how_to_extend_it(
        fake_labs: Path) -> None:
    """What bounds a run when labctl is gone; here labctl sees it happen."""
    api = FakeApi(scripts=async_scripts(**{
        "fake-async-worker-0": [Attempt(progress(1, 2, 3), every_s=0.2, forever=True)]}),
        deadline_scale=0.02)  # 60 "seconds" of deadline pass in 1.2 s
    done = run_lab(api, deadline_s=60)
    assert done.outcome.status == "failed"
    jobs = {j["metadata"]["name"]: j for j in api.list("Job")}
    assert all(j["spec"]["activeDeadlineSeconds"] == 60 for j in jobs.values())
    log = (done.run.logs / "worker-0.log").read_text()
    assert ("Job fake-async-worker-0 failed: DeadlineExceeded: Job was active longer than "
            "specified deadline (raise it with --deadline S)") in log


def test_stall_watchdog_fails_a_silent_job(fake_labs: Path) -> None:
    api = FakeApi(scripts=async_scripts(**{
        "fake-async-worker-0": [Attempt(progress(1), forever=True)],
        "fake-async-worker-1": [Attempt(progress(1), forever=True)]}))
    done = run_lab(api, stall_s=1.0)
    assert done.outcome.status == "failed" and "stalled" in done.outcome.reason
    assert {"Job/fake-async-worker-0", "Job/fake-async-worker-1"} <= set(api.made("delete"))


def attendee(api: FakeApi, name: str = "alice") -> str:
    """A namespace the instructor (or the attendee, on their own cluster) made beforehand."""
    api.create({"kind": "Namespace", "metadata": {"name": name}})
    return name


def test_shared_objects_are_reused_by_the_next_run_and_cleaned_with_the_lab(
        fake_labs: Path) -> None:
    api = FakeApi(scripts={})
    ns = attendee(api)
    first = run_lab(api, "11", namespace=ns)
    second = run_lab(api, "11", namespace=ns)
    assert first.outcome.status == second.outcome.status == "succeeded"
    created = api.made("create")
    assert created.count("PersistentVolumeClaim/models") == 1
    assert f"Job/train-{second.run.run_id}-main" in created
    assert first.run.record().namespace == second.run.record().namespace == ns
    lifecycle.clean(first.run, api=api)  # a run alone: its own objects only
    assert api.read("PersistentVolumeClaim", "models", ns) is not None
    assert api.read("Job", f"train-{first.run.run_id}-main", ns) is None
    lifecycle.clean(second.run, api=api, shared=True)  # the lab's last run: shared ones too
    assert api.read("PersistentVolumeClaim", "models", ns) is None
    assert api.read("Namespace", ns) is not None  # the attendee's: never labctl's to delete


def test_a_lab_that_needs_your_namespace_refuses_to_run_without_one(fake_labs: Path) -> None:
    api = FakeApi(scripts={})
    with pytest.raises(UsageError, match=r"lab 11-fake-shared runs in your own namespace: make "
                                         r"one your context's \(`kubectl create namespace"):
        run_lab(api, "11")
    assert api.made("create") == []
    assert not rundir.runs_root("11-fake-shared").exists()  # no run dir half made


def test_a_run_waits_for_an_earlier_runs_object_still_being_deleted(
        fake_labs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`labctl clean 11 && labctl run 11`: the models volume of the earlier run is still
    being deleted (a PVC waits for its finalizer); the new run waits, then makes its own."""
    api = FakeApi(scripts={})
    ns = attendee(api)
    api._put({"kind": "PersistentVolumeClaim", "metadata": {
        "name": "models", "namespace": ns, "deletionTimestamp": "2026-12-03T10:00:00Z",
        "labels": {m.LABEL_SHARED: "true", m.LABEL_LAB: "11-fake-shared"}}})
    _later(1.0, api.objects.pop, ("PersistentVolumeClaim", ns, "models"))
    capsys.readouterr()
    done = run_lab(api, "11", namespace=ns)
    assert done.outcome.status == "succeeded", done.outcome
    assert ("waiting for an earlier run's objects to finish deleting: "
            "PersistentVolumeClaim/models") in capsys.readouterr().out
    assert api.made("create").count("PersistentVolumeClaim/models") == 1


def test_an_attendee_namespace_being_deleted_is_an_error(fake_labs: Path) -> None:
    api = FakeApi(terminate_s=60)
    api.create({"kind": "Namespace", "metadata": {"name": "alice"}})
    api.delete("Namespace", "alice")
    with pytest.raises(ClusterError, match="namespace alice is being deleted"):
        run_lab(api, namespace="alice")


def pull_waiting(api: FakeApi, reason: str, message: str) -> None:
    """A Job's pod that waits for its image, as the kubelet reports it."""
    if api.read("Namespace", "ns") is None:
        api.create({"kind": "Namespace", "metadata": {"name": "ns"}})
    api._put({"kind": "Pod", "metadata": {
        "name": "w-0-abc", "namespace": "ns",
        "labels": {"batch.kubernetes.io/job-name": "w-0", m.LABEL_RUN: "r"}},
        "status": {"phase": "Pending", "containerStatuses": [{
            "image": "tensorflow/tensorflow:9.9.9-gpu", "state": {"waiting": {
                "reason": reason, "message": message}}}]}})


# The kubelet's words (containerd's error, then the back-off that repeats it).
NOT_FOUND = ('failed to pull and unpack image "docker.io/tensorflow/tensorflow:9.9.9-gpu": '
             'failed to resolve reference "docker.io/tensorflow/tensorflow:9.9.9-gpu": '
             'docker.io/tensorflow/tensorflow:9.9.9-gpu: not found')
RATE_LIMIT = ('Back-off pulling image "tensorflow/tensorflow:9.9.9-gpu": ErrImagePull: '
              'failed to copy: httpReadSeeker: failed open: unexpected status code '
              'https://registry-1.docker.io/v2/tensorflow/tensorflow/manifests/sha256:0: '
              '429 Too Many Requests - Server message: toomanyrequests: You have reached your '
              'pull rate limit')


def test_wait_started_fails_fast_on_an_image_that_does_not_exist() -> None:
    api = FakeApi()
    pull_waiting(api, "ErrImagePull", NOT_FOUND)
    with pytest.raises(ClusterError, match=r"pod w-0-abc cannot pull image tensorflow/tensorflow"
                                           r":9\.9\.9-gpu from docker\.io \(ErrImagePull: .*"
                                           r"not found\): pre-pull the lab images"):
        waits.wait_started(api, "ns", f"{m.LABEL_RUN}=r", ["w-0"], lambda _t: None,
                             sleep=lambda _s: None)


def test_a_job_whose_pods_admission_refuses_fails_the_start_with_the_reason() -> None:
    """Pod Security never refuses the Job itself, only the pods it makes: no pod to inspect,
    only the Job controller's FailedCreate event."""
    api = FakeApi()
    api.create({"kind": "Namespace", "metadata": {"name": "ns"}})
    message = ('Error creating: pods "w-0-abc" is forbidden: violates PodSecurity '
               '"restricted:latest": runAsNonRoot != true')
    api._put({"kind": "Event", "metadata": {"name": "w-0.1", "namespace": "ns"},
              "involvedObject": {"kind": "Job", "name": "w-0"}, "type": "Warning",
              "reason": "FailedCreate", "message": message})
    with pytest.raises(ClusterError, match=r"^Job w-0 cannot create its pod: Error creating: "
                                           r"pods .* violates PodSecurity"):
        waits.wait_started(api, "ns", f"{m.LABEL_RUN}=r", ["w-0"], lambda _t: None,
                             sleep=lambda _s: None)


def test_a_shared_server_whose_image_does_not_exist_fails_the_start() -> None:
    """Lab 11's TF Serving pod carries no run label; its missing image must not go unseen."""
    api = FakeApi()
    api.create({"kind": "Namespace", "metadata": {"name": "ns"}})
    api._put({"kind": "Pod", "metadata": {
        "name": "w-0-abc", "namespace": "ns",
        "labels": {"batch.kubernetes.io/job-name": "w-0", m.LABEL_RUN: "r"}},
        "status": {"phase": "Pending"}})
    api._put({"kind": "Pod", "metadata": {
        "name": "digits-serving-5d9-x", "namespace": "ns",
        "labels": {"app": "digits-serving", m.LABEL_SHARED: "true", m.LABEL_LAB: "11-x"}},
        "status": {"phase": "Pending", "containerStatuses": [{
            "image": "tensorflow/serving:2.99.0", "state": {"waiting": {
                "reason": "ErrImagePull", "message": "docker.io/tensorflow/serving:2.99.0: "
                                                     "not found"}}}]}})
    with pytest.raises(ClusterError, match=r"pod digits-serving-5d9-x cannot pull image "
                                           r"tensorflow/serving:2\.99\.0 from docker\.io"):
        waits.wait_started(api, "ns", f"{m.LABEL_RUN}=r", ["w-0"], lambda _t: None,
                             sleep=lambda _s: None,
                             shared_sel=f"{m.LABEL_SHARED}=true,{m.LABEL_LAB}=11-x")


def test_a_rate_limited_pull_is_retried_until_the_deadline() -> None:
    """A registry rate limit passes (the kubelet retries): no failure before PULL_RETRY_S,
    then one line naming the image and the registry."""
    api = FakeApi()
    pull_waiting(api, "ImagePullBackOff", RATE_LIMIT)
    now, seen = [0.0], []

    def tick(seconds: float) -> None:
        seen.append(now[0])
        now[0] += 20

    with pytest.raises(ClusterError) as caught:
        waits.wait_started(api, "ns", f"{m.LABEL_RUN}=r", ["w-0"], lambda _t: None,
                             timeout_s=3600, clock=lambda: now[0], sleep=tick)
    assert max(seen) >= waits.PULL_RETRY_S - 20
    assert str(caught.value).startswith(
        "pod w-0-abc cannot pull image tensorflow/tensorflow:9.9.9-gpu from docker.io for "
        "300 s (ImagePullBackOff: Back-off pulling image")
    assert "429 Too Many Requests" in str(caught.value)


def test_a_pull_that_succeeds_on_retry_lets_the_run_go_on(fake_labs: Path) -> None:
    api = FakeApi(scripts=async_scripts(**{"fake-async-worker-1": [Attempt(
        progress(4, 8, 12, 16, 20), waiting="ErrImagePull", waiting_message=RATE_LIMIT,
        waiting_s=0.5, files={"tasks/worker-1.json": "{}"})]}))
    done = run_lab(api)
    assert done.outcome.status == "succeeded", done.outcome


@pytest.mark.parametrize("image, registry", [
    ("tensorflow/serving:1.0", "docker.io"), ("busybox", "docker.io"),
    ("registry.k8s.io/pause:3.10", "registry.k8s.io"), ("localhost/tf-lab:1", "localhost"),
    ("mirror.lan:5000/tensorflow/tensorflow:1.0", "mirror.lan:5000")])
def test_the_registry_of_an_image(image: str, registry: str) -> None:
    assert waits.registry(image) == registry


def test_wait_started_gives_up_on_an_unschedulable_pod() -> None:
    api = FakeApi()
    api.create({"kind": "Namespace", "metadata": {"name": "ns"}})
    api._put({"kind": "Pod", "metadata": {
        "name": "w-0-abc", "namespace": "ns",
        "labels": {"batch.kubernetes.io/job-name": "w-0", m.LABEL_RUN: "r"}},
        "status": {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}})
    now = [0.0]

    def tick(seconds: float) -> None:
        now[0] += 30

    with pytest.raises(ClusterError, match=r"cannot be scheduled: 0/3 nodes .* nvidia\.com/gpu"):
        waits.wait_started(api, "ns", f"{m.LABEL_RUN}=r", ["w-0"], lambda _t: None,
                             clock=lambda: now[0], sleep=tick)


def test_the_collector_runs_where_the_lab_ran_and_pulls_nothing(fake_labs: Path) -> None:
    api = FakeApi(scripts=async_scripts())
    created: list[dict[str, Any]] = []
    real_create = api.create
    api.create = lambda doc: (created.append(doc), real_create(doc))[1]  # type: ignore[method-assign]
    done = run_lab(api)
    assert done.run.read("run.json")["collect"] == {"copied": True, "files": 3}
    pod = next(d for d in created if d["metadata"]["name"] == "fake-async-collect")
    container = pod["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}]


@pytest.mark.parametrize("collector, reason", [
    ("garbled", "the collector's output is not a complete archive"),
    ("ErrImagePull", f"cannot pull image {m.tf_image()} from docker.io"),
])
def test_a_failed_copy_keeps_the_training_verdict_and_says_how_to_copy(
        fake_labs: Path, capsys: pytest.CaptureFixture[str], collector: str,
        reason: str) -> None:
    from labctl.checks import run_check

    api = FakeApi(scripts=async_scripts(), collector=collector)
    done = run_lab(api)
    record = done.run.read("run.json")
    assert done.outcome.status == record["status"] == "succeeded"
    assert record["collect"]["copied"] is False and reason in record["collect"]["reason"]
    out = capsys.readouterr().out
    warning = next(ln for ln in out.splitlines() if ln.startswith("labctl: warning:"))
    assert reason in warning and f"kubectl -n {record['namespace']} create -f " in warning
    assert (done.run.path / "collect.yaml").is_file()
    assert "Pod/fake-async-collect" in api.made("delete")  # not left behind
    # A check that would pass anything: labctl does not even ask it without the results.
    (fake_labs / "04-fake-async" / "check.py").write_text("print('PASS: anything')\n")
    verdict = run_check(load("04"), done.run)
    assert not verdict.passed and "were not copied from the cluster" in verdict.message
    assert verdict.hint.startswith("copy them, then check again: kubectl -n ")


def test_a_garbled_archive_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"^the collector's output is not a complete archive "
                                           r"\(\w+: [^\n]*\)$"):
        collect.unpack("H4sIAAAAAAAA", tmp_path)
    with pytest.raises(ClusterError, match="not a complete archive"):
        collect.unpack("not base64 at all!", tmp_path)


def test_the_collector_script_round_trips_the_volume(tmp_path: Path) -> None:
    """The script the collector pod runs, here on a local folder: its output unpacks to the same
    files; files over the size limit stay behind."""
    volume, into = tmp_path / "volume", tmp_path / "into"
    (volume / "tasks").mkdir(parents=True)
    (volume / "results.json").write_text(RESULTS)
    (volume / "tasks" / "worker-0.json").write_text("{}")
    (volume / "big.bin").write_bytes(b"x" * (collect.COLLECT_MAX_FILE + 1))
    script = collect.COLLECT_SCRIPT.format(root=str(volume), limit=collect.COLLECT_MAX_FILE)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert sorted(collect.unpack(out, into)) == ["results.json", "tasks/worker-0.json"]
    assert (into / "results.json").read_text() == RESULTS


def test_clean_of_an_unreachable_cluster_warns_and_names_the_leftovers(
        fake_labs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from labctl.targets import k8s

    run = rundir.create("04-fake-async")
    run.save(RunRecord("04-fake-async", target="k8s", run_id=run.run_id,
                       namespace="tf-04-x", kubeconfig="/gone/kubeconfig"))
    assert k8s.Kubernetes().clean(run) == []
    err = capsys.readouterr().err
    assert "were not deleted (kubeconfig /gone/kubeconfig does not exist)" in err
    kinds = "cronjob,job,pod,deployment,service,configmap,persistentvolumeclaim"
    assert f"-n tf-04-x delete {kinds} -l labctl/run-id={run.run_id}" in err


def test_losing_the_api_server_mid_run_fails_it_with_the_reason(fake_labs: Path) -> None:
    api = FakeApi(scripts=async_scripts(**{
        "fake-async-worker-0": [Attempt(progress(1, 2, 3), every_s=0.5, forever=True)]}))

    def cut() -> None:
        time.sleep(1.0)
        api.reachable = False

    threading.Thread(target=cut, daemon=True).start()
    done = run_lab(api)
    assert done.outcome.status == "failed"
    assert "lost the Kubernetes API: cannot reach" in (
        done.run.logs / "worker-0.log").read_text()


def test_list_names_the_runs_still_on_the_cluster(fake_labs: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from labctl import cli

    done = run_lab(FakeApi(scripts=async_scripts()))
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "runs whose objects stay on the cluster until `labctl clean LAB`:" in out
    assert (f"04-fake-async {done.run.run_id}: namespace {done.run.read('run.json')['namespace']} "
            f"({FakeApi.host})") in out


def test_sweep_removes_labctl_objects_without_a_run_record_and_nothing_else(
        fake_labs: Path) -> None:
    """`labctl clean --all` after `make clean` removed the run records."""
    import shutil

    api = FakeApi(scripts=async_scripts())
    done = run_lab(api)
    api.create({"kind": "Namespace", "metadata": {"name": "alice"}})
    api.create({"kind": "ConfigMap", "metadata": {"name": "mine", "namespace": "alice"}})
    namespace = done.run.read("run.json")["namespace"]
    shutil.rmtree(done.run.path.parent)
    swept = lifecycle.sweep(api)
    assert f"Namespace/{namespace}" in swept and "Job/fake-async-worker-0" in swept
    assert leftovers(api, done.run.run_id) == []
    assert api.read("ConfigMap", "mine", "alice") is not None
    assert api.read("StorageClass", m.STORAGE_CLASS) is not None


def test_pods_made_in_the_same_second_are_told_apart_by_liveness() -> None:
    """Real creationTimestamps have whole seconds; a replacement made in the second its
    predecessor failed must still count as the newer pod (for --kill and the log markers)."""
    import queue

    from labctl.tasks import TaskSpec

    api = FakeApi()
    lines: queue.Queue[Any] = queue.Queue()
    handle = backend.JobHandle(api, "ns", "w-0", TaskSpec("worker", 0), lines)
    stamp = "2026-12-02T10:00:02Z"
    new = {"metadata": {"name": "w-0-aaaaa", "creationTimestamp": stamp},
           "status": {"phase": "Pending"}}
    old = {"metadata": {"name": "w-0-zzzzz", "creationTimestamp": stamp},
           "status": {"phase": "Failed", "containerStatuses": [
               {"state": {"terminated": {"exitCode": 1}}}]}}
    handle.update({"metadata": {"name": "w-0"}, "status": {}}, [new, old])
    assert [p["metadata"]["name"] for p in handle.pods] == ["w-0-zzzzz", "w-0-aaaaa"]
    assert handle.current_pod() == "w-0-aaaaa"
    being_deleted = {"metadata": {"name": "w-0-bbbbb", "creationTimestamp": stamp,
                                  "deletionTimestamp": stamp}, "status": {"phase": "Running"}}
    handle.update({"metadata": {"name": "w-0"}, "status": {}}, [new, being_deleted])
    assert handle.current_pod() == "w-0-aaaaa"
