"""`labctl run LAB --target k8s`: the rendered manifests on a real cluster, supervised by
labctl's Job controller like local processes. The steps, and the module that owns each:

1. preflight, creating nothing: API reachable, StorageClass, GPU capacity, namespace, name
   clashes (lifecycle.py);
2. create every object in order; any refusal rolls back what this run created (lifecycle.py);
3. wait until every task's pod runs: image pulls are not stalls; unschedulable or unpullable
   pods fail fast with their events (waits.py);
4. the controller streams pod logs (same prefixes, progress bar, watchdog); a task "exits" when
   its Job completes or fails (the Job itself retries pods: backoffLimit, podFailurePolicy);
   `--kill TASK@STEP` evicts the task's pod, and the Job replaces it (backend.py);
5. once the success task's Job completes, parameter servers (and, for launcher-shutdown labs,
   workers) are deleted; results are copied from the PVC into the local run dir by a short-lived
   pod, so `labctl check` reads them as for local runs (collect.py).

Lab 08 has no training job: its objects are the lab, and the run ends once they are ready
(`run_objects`). This module strings the steps together and keeps the run record.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence

from labctl import rundir
from labctl.job import JobSpec, Outcome
from labctl.k8s import manifests as m
from labctl.k8s.api import Api, ClusterError
from labctl.k8s.backend import KubeBackend
from labctl.k8s.collect import collect_results, collector_pod
from labctl.k8s.kubeconfigs import context_namespace
from labctl.k8s.lifecycle import Skipped, create_all, preflight, rollback, selector
from labctl.k8s.render import render
from labctl.k8s.waits import wait_ready, wait_started
from labctl.labs import Lab
from labctl.plan import LabPlan
from labctl.record import RunRecord
from labctl.restart import RestartPolicy
from labctl.rundir import RunDir
from labctl.states import RunStatus, Target
from labctl.supervise import execute


def note(text: str) -> None:
    print(f"labctl: {text}", flush=True)


def events_of(api: Api, namespace: str, pod: str) -> list[str]:
    try:
        events = api.list("Event", namespace, field_selector=f"involvedObject.name={pod}")
    except ClusterError:
        return []
    return [f"{e.get('type')} {e.get('reason')}: {e.get('message')}" for e in events][-10:]


@dataclasses.dataclass
class K8sRun:
    run: RunDir
    outcome: Outcome
    skipped: str | None = None


def run(lab: Lab, plan: LabPlan, spec: JobSpec, record: RunRecord, quiet: bool,
        namespace: str | None = None, image: str | None = None, kubeconfig: str | None = None,
        api_factory: Callable[[], Api] | None = None, deadline_s: int | None = None,
        cpu_requests: Mapping[str, str] | None = None,
        cpu_limits: Mapping[str, str] | None = None) -> K8sRun:
    """Preflight, create, supervise, shut down, collect. ClusterError: nothing left behind."""
    api = (api_factory or (lambda: Api(kubeconfig)))()
    api.version()  # unreachable cluster: fail before a run dir exists
    # A classroom kubeconfig's context names the attendee's namespace: runs go there.
    namespace = namespace or context_namespace(getattr(api, "kubeconfig", None))
    m.need_namespace(lab, namespace)
    run_dir = rundir.create(lab.name)
    record = record.update(target=Target.K8S, run_id=run_dir.run_id)
    try:
        return _run(api, run_dir, lab, plan, spec, record, quiet, namespace, image, deadline_s,
                    dict(cpu_requests or {}), dict(cpu_limits or {}))
    except (ClusterError, Skipped) as exc:
        status = RunStatus.SKIPPED if isinstance(exc, Skipped) else RunStatus.FAILED
        # Nothing stays on the cluster after these (rolled back), so none of it is recorded.
        run_dir.save(record.update(status=status, reason=str(exc),
                                   finished=rundir.iso(time.time())))
        if isinstance(exc, Skipped):
            return K8sRun(run_dir, Outcome(RunStatus.SKIPPED, str(exc), None, [], 0, 0.0), str(exc))
        raise


def _run(api: Api, run_dir: RunDir, lab: Lab, plan: LabPlan, spec: JobSpec,
         record: RunRecord, quiet: bool, namespace: str | None, image: str | None,
         deadline_s: int | None, cpu_requests: dict[str, str],
         cpu_limits: dict[str, str]) -> K8sRun:
    where = m.Placement(
        namespace=namespace or m.run_namespace(lab, run_dir.run_id),
        run_id=run_dir.run_id,
        create_namespace=namespace is None,
        image=image,
        backoff_limit=spec.policy.max_restarts,
        deadline_s=deadline_s,
        cpu_requests=cpu_requests,
        cpu_limits=cpu_limits,
    )
    docs = render(lab, plan, where)
    todo = preflight(api, lab, docs, where, note)
    created = create_all(api, todo)
    record = record.update(
        api_server=api.host, kubeconfig=str(getattr(api, "kubeconfig", "") or ""),
        namespace=where.namespace,
        namespace_created=any(d["kind"] == "Namespace" for d in created),
        created=[f"{d['kind']}/{d['metadata']['name']}" for d in created],
        cluster=m.cluster(lab, plan, where))
    run_dir.save(record.update(status="starting"))
    note(f"namespace {where.namespace} (`kubectl -n {where.namespace} get pods`)")
    if not m.settings(lab).jobs:
        return run_objects(api, run_dir, lab, where, docs, created, record)
    return run_jobs(api, run_dir, lab, plan, spec, where, created, record, quiet)


def run_objects(api: Api, run_dir: RunDir, lab: Lab, where: m.Placement,
                docs: Sequence[m.Manifest], created: Sequence[m.Manifest],
                record: RunRecord) -> K8sRun:
    """Lab 08: its objects are the lab, and the attendee goes on with kubectl. The run
    succeeds once they are ready; what does not get ready is rolled back."""
    try:
        wait_ready(api, where.namespace, selector(run_dir.run_id, lab), docs, note)
    except BaseException:
        rollback(api, created)
        raise
    note(f"ready in namespace {where.namespace}: "
         + ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs
                     if d["kind"] in ("Pod", "Deployment", "Service", "Job")))
    run_dir.save(record.update(status=RunStatus.SUCCEEDED, finished=rundir.iso(time.time())))
    return K8sRun(run_dir, Outcome(RunStatus.SUCCEEDED, "", None, [], 0, 0.0))


def run_jobs(api: Api, run_dir: RunDir, lab: Lab, plan: LabPlan, spec: JobSpec,
             where: m.Placement, created: Sequence[m.Manifest], record: RunRecord,
             quiet: bool) -> K8sRun:
    """A TF cluster as one Job per task, supervised by the controller; results copied back."""
    names = m.Names(lab, plan, where)
    run_sel = selector(run_dir.run_id, lab)
    jobs = {t: names.task(t) for t in plan.tasks}
    # A task given its own CPU request is an experiment on scheduling: the run goes on without
    # waiting for it to be scheduled (a request no node can meet leaves it Pending, with the
    # scheduler's events).
    awaited = [job for t, job in jobs.items() if t.name not in where.cpu_requests]
    try:
        wait_started(api, where.namespace, run_sel, awaited, note,
                     shared_sel=f"{m.LABEL_SHARED}=true,{m.LABEL_LAB}={lab.name}",
                     unawaited=[job for job in jobs.values() if job not in awaited])
    except BaseException:
        rollback(api, created)  # pods that cannot start: the error says why, nothing stays
        raise
    # The Job retries pods itself (backoffLimit); the controller must not start a task twice.
    k8s_spec = dataclasses.replace(spec, policy=RestartPolicy(max_restarts=0))
    backend = KubeBackend(api, where.namespace, run_sel, jobs)
    outcome = execute(run_dir, k8s_spec, record, backend, quiet,
                      extra=lambda: {"pods": backend.summary()})
    if outcome.status == RunStatus.SUCCEEDED:
        ran = backend.summary().get(spec.success.name, {}).get("pods") or [{}]
        pod = collector_pod(lab, where, names, m.image(lab, where), ran[-1].get("node"))
        collected = collect_results(api, run_dir, pod)
        run_dir.save((run_dir.record() or record).update(collect=collected))
    elif outcome.failed_task:
        summary = backend.summary().get(outcome.failed_task, {})
        pods = summary.get("pods", [])
        if pods:
            events = events_of(api, where.namespace, pods[-1]["name"])
            run_dir.save((run_dir.record() or record).update(events=events))
            for line in events:
                print(f"labctl: event of pod {pods[-1]['name']}: {line}")
    return K8sRun(run_dir, outcome)
