"""The controller's backend on a cluster: a task is a Job, its output the logs of the Job's pods."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from labctl.job import Lines
from labctl.k8s import manifests as m
from labctl.k8s import status
from labctl.k8s.api import Api, ClusterError
from labctl.tasks import TaskSpec

LOST_AFTER = 15  # failed polls in a row: the API server is gone, the run cannot be followed


STOPPED = -15  # a Job that labctl deleted (as a SIGTERM'd local task)


class Watcher:
    """One thread polls the run's Jobs and pods and hands each task's share to its handle."""

    def __init__(self, api: Api, namespace: str, run_sel: str) -> None:
        self.api, self.namespace, self.run_sel = api, namespace, run_sel
        self.handles: dict[str, JobHandle] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def refresh(self) -> None:
        jobs = {j["metadata"]["name"]: j for j in self.api.list("Job", self.namespace,
                                                                 self.run_sel)}
        pods: dict[str, list[m.Manifest]] = {}
        for pod in self.api.list("Pod", self.namespace, self.run_sel):
            job = status.job_of(pod)
            if job:
                pods.setdefault(job, []).append(pod)
        for name, handle in list(self.handles.items()):
            handle.update(jobs.get(name), pods.get(name, []))

    def _loop(self) -> None:
        failures = 0
        while not self.stopped.wait(status.POLL_S):
            try:
                self.refresh()
                failures = 0
            except ClusterError as exc:
                failures += 1
                if failures >= LOST_AFTER:
                    for handle in list(self.handles.values()):
                        handle.lost(str(exc))


class JobHandle:
    """The Controller's view of one task: running while its Job is active."""

    def __init__(self, api: Api, namespace: str, job: str, task: TaskSpec, lines: Lines) -> None:
        self.api, self.namespace, self.job, self.task, self.lines = (
            api, namespace, job, task, lines)
        self.lock = threading.Lock()
        self.followed: dict[str, threading.Thread] = {}  # pod name -> its log follower
        self.pods: list[m.Manifest] = []  # the Job's pods now
        self.history: dict[str, dict[str, Any]] = {}  # every pod it ever had, last seen state
        self.state: m.Manifest | None = None
        self.seen = False  # the Job was listed at least once
        self.deleted = False
        self.gone = False  # the API server was lost: nothing more is followed
        self.code: int | None = None

    def _marker(self, text: str) -> None:
        self.lines.put((self.task, f"----- labctl: {text} -----"))

    def _follow(self, pod: str) -> None:
        for line in self.api.log_lines(pod, self.namespace, m.CONTAINER):
            self.lines.put((self.task, line))

    def update(self, job: m.Manifest | None, pods: list[m.Manifest]) -> None:
        with self.lock:
            if self.gone:
                return
            self.state = job
            self.seen = self.seen or job is not None
            # Oldest first. Timestamps have whole seconds: of two pods made in the same second,
            # the one still live (not terminal, not being deleted) is the newer.
            pods = sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "",
                                               status.live(p)))
            self.pods = pods
            for pod in pods:
                name = pod["metadata"]["name"]
                self.history[name] = {
                    "name": name, "phase": pod.get("status", {}).get("phase"),
                    "exit_code": status.exit_code(pod), "node": pod.get("spec", {}).get("nodeName")}
                if name in self.followed or not status.started(pod):
                    continue
                if self.followed:
                    previous = list(self.followed)[-1]
                    self._marker(f"pod {name} replaces {previous} (the Job restarted "
                                 f"{self.task.name})")
                thread = threading.Thread(target=self._follow, args=(name,), daemon=True)
                self.followed[name] = thread
                thread.start()
            if self.code is None:
                self.code = self._finished_code()

    def lost(self, reason: str) -> None:
        """The cluster stopped answering: the task counts as failed, with the reason logged."""
        with self.lock:
            if self.code is None:
                self._marker(f"lost the Kubernetes API: {reason}")
                self.code = 1
                self.gone = True
                self.followed.clear()  # their streams hang with the API server: stop waiting

    def _finished_code(self) -> int | None:
        if self.state is None:
            return STOPPED if self.deleted or self.seen else None
        result = status.job_result(self.state)
        if result is None:
            return None
        if result["type"] == "Complete":
            return 0
        if result["type"] == "Failed":
            failed = result
            hint = " (raise it with --deadline S)" if failed.get("reason") == \
                "DeadlineExceeded" else ""
            self._marker(f"Job {self.job} failed: {failed.get('reason')}: "
                         f"{failed.get('message', '')}".rstrip(": ") + hint)
            codes = [c for c in (status.exit_code(p) for p in self.pods) if c is not None]
            if failed.get("reason") == "PodFailurePolicy":
                return 2
            return codes[-1] if codes and codes[-1] != 0 else 1
        return None

    def poll(self) -> int | None:
        with self.lock:
            if self.code is None:
                return None
            if any(t.is_alive() for t in self.followed.values()):
                return None  # the last lines are still coming
            return self.code

    def current_pod(self) -> str | None:
        with self.lock:
            live = [p for p in self.pods if status.live(p)]
            return live[-1]["metadata"]["name"] if live else None

    def kill(self) -> None:
        """Fault injection: evict the pod; the Job replaces it. An evicted pod carries the
        DisruptionTarget condition, which the Job's podFailurePolicy ignores, so the kill does
        not use up backoffLimit (a plain DELETE would)."""
        pod = self.current_pod()
        if pod:
            self.api.evict(pod, self.namespace, grace_s=0)

    def terminate(self) -> None:
        with self.lock:
            self.deleted = True
        self.api.delete("Job", self.job, self.namespace)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {"job": self.job, "pods": list(self.history.values())}


class KubeBackend:
    def __init__(self, api: Api, namespace: str, run_sel: str, jobs: dict[TaskSpec, str]) -> None:
        self.api, self.namespace, self.jobs = api, namespace, jobs
        self.watcher = Watcher(api, namespace, run_sel)

    def start(self, task: TaskSpec, lines: Lines) -> JobHandle:
        handle = JobHandle(self.api, self.namespace, self.jobs[task], task, lines)
        self.watcher.handles[handle.job] = handle
        if not self.watcher.thread.is_alive():
            self.watcher.thread.start()
        return handle

    def stop_all(self, handles: list[JobHandle], grace_s: float) -> None:
        """Delete the Jobs still running (failure, Ctrl-C); finished ones stay for inspection
        until `labctl clean`."""
        for handle in handles:
            if handle.poll() is None:
                with contextlib.suppress(ClusterError):
                    handle.terminate()
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(h.poll() is None for h in handles):
            try:
                self.watcher.refresh()
            except ClusterError:
                break
            time.sleep(0.2)
        self.watcher.stopped.set()

    def summary(self) -> dict[str, Any]:
        return {h.task.name: h.summary() for h in self.watcher.handles.values()}
