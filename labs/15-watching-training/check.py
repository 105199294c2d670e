"""Lab 15 check: the run was watched, throttled and starved, and each left its mark.

1. TensorBoard, the lab's Deployment on the run's volume, asked through the API server's service
   proxy, serves the run's loss, accuracy and global_step/sec up to the global step of the
   run's last checkpoint (read here from the checkpoint);
2. the worker given a CPU limit (`--cpu-limit`) ran under it and the kernel throttled it: its
   cgroup's cpu.max is that limit's CFS quota and its cpu.stat counts throttled periods and
   time; and it trained fewer steps per second than each worker without one. Both come from
   the workers' tasks/worker-N.json, whose local steps add up to the checkpoint's global step:
   a container's cgroup is removed when it exits, so each worker copies its cgroup's two files,
   as the kernel wrote them, into its file when it stops (labkit.report.cgroup_cpu);
3. the task given a CPU request (`--cpu-request`) that no node can meet was never scheduled:
   the scheduler's FailedScheduling events on its pod name `Insufficient cpu`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from labkit import checks
from labkit.checks import Failed, Run, require

HOW = "labctl run 15 --target k8s --cpu-limit worker:1=100m --cpu-request worker:2=64"
SERVICE, PORT = "tensorboard", 6006  # manifests/tensorboard.yaml
# TensorBoard names a run after its directory below --logdir (the volume): the chief writes its
# summaries beside its checkpoints, in output/checkpoints.
TB_RUN = "checkpoints"
TAGS = ("loss", "accuracy", "global_step/sec")  # lab 04's summaries and StepCounterHook's
# The chief writes summaries once 100 global steps have passed since the last ones
# (labkit.graph.monitored_session), seen at its own steps, between which the other workers add
# theirs: the last ones lie less than two such intervals before the final step.
REACH = 2 * 100
MEASURED = 100  # local steps a throttled worker must train for its speed to mean something
CFS_PERIOD_US = 100_000  # the kubelet's CFS period (its cpuCFSQuotaPeriod default)


def options(run: Run, name: str) -> dict[str, str]:
    """`--cpu-limit`/`--cpu-request TASK=CPU` as labctl recorded them: task name -> CPU."""
    pairs = (run.meta.get("options") or {}).get(name) or []
    return {task.strip(): cpu.strip() for task, _, cpu in (p.partition("=") for p in pairs)}


def counters(cpu_stat: str) -> dict[str, int]:
    """cgroup v2 cpu.stat: one `name value` per line (usage_usec, ..., nr_periods,
    nr_throttled, throttled_usec, ...; Documentation/admin-guide/cgroup-v2.rst)."""
    pairs = (line.split() for line in cpu_stat.splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].isdigit()}


# --- 1. TensorBoard -------------------------------------------------------------------------------
def scalars(api: Any, ns: str, step: int) -> str:
    """TensorBoard 2.21's data API (tensorboard/plugins/scalar/scalars_plugin.py):
    /data/plugin/scalars/tags -> {run: {tag: {displayName, description}}} and
    /data/plugin/scalars/scalars?run=R&tag=T -> [[wall_time, step, value], ...]."""
    from labctl.k8s.api import ClusterError

    def get(path: str) -> Any:
        try:
            return api.proxy(ns, SERVICE, PORT, path)
        except ClusterError as err:
            raise Failed(f"cannot ask TensorBoard: {err}",
                         f"is it Ready? `kubectl -n {ns} get pods -l app=tensorboard`, then "
                         f"`kubectl -n {ns} logs deploy/tensorboard`") from None

    tags = get("data/plugin/scalars/tags")
    runs = {name: sorted(found) for name, found in tags.items()} if isinstance(tags, dict) else {}
    missing = [tag for tag in TAGS if tag not in runs.get(TB_RUN, [])]
    require(not missing, f"TensorBoard has no {', '.join(missing)} for run {TB_RUN!r} (it "
            f"has {runs or 'no run'})", "its --logdir must be the run's volume, where the chief "
            f"writes checkpoints/events.out.tfevents.*: `kubectl -n {ns} exec deploy/tensorboard "
            "-- ls /output/checkpoints`")
    last = {}
    for tag in TAGS:
        points = get("data/plugin/scalars/scalars?" + urlencode({"run": TB_RUN, "tag": tag}))
        last[tag] = max((int(point[1]) for point in points), default=0)
        require(last[tag] >= step - REACH,
                f"TensorBoard's {tag} ends at step {last[tag]}, the run's checkpoint is at "
                f"step {step}", "TensorBoard rereads the event files every 5 s: check again in "
                f"a moment (`kubectl -n {ns} port-forward svc/{SERVICE} 6006:6006` shows it)")
    return (f"TensorBoard serves {', '.join(TAGS)} of run {TB_RUN} to step "
            f"{min(last.values())} (checkpoint at {step})")


# --- 2. the throttled worker ----------------------------------------------------------------------
def accounted(run: Run, step: int) -> dict[str, dict[str, Any]]:
    """The workers' files, once their local steps add up to the checkpoint's global step: in
    asynchronous training every local step is one global step."""
    tasks = run.tasks("worker")
    total = sum(int(t.get("local_steps", 0)) for t in tasks.values())
    require(abs(total - step) <= len(tasks),
            f"the workers' files count {total} local steps, the checkpoint {step} global steps",
            "each worker writes tasks/worker-N.json once it stops: run the lab again and do "
            "not restart workers")
    return tasks


def throttled(run: Run, tasks: dict[str, dict[str, Any]]) -> str:
    from labctl.k8s.manifests import millicores  # as labctl read the option

    limits = {name.replace(":", "-"): cpu for name, cpu in options(run, "cpu_limit").items()
              if name.startswith("worker:")}
    require(limits, "no worker of this run had a CPU limit of its own", f"`{HOW}`")
    free = {stem: t for stem, t in tasks.items() if stem not in limits}
    require(free, "every worker that finished had a CPU limit of its own: nothing to compare",
            "throttle one worker only, e.g. `--cpu-limit worker:1=100m`")
    done = []
    for stem, cpu in sorted(limits.items()):
        task = tasks.get(stem)
        require(task, f"{stem} (CPU limit {cpu}) wrote no tasks/{stem}.json: it never finished "
                "training", "with a limit that low even its start is slow: keep 100m and give "
                "the run more steps (`--steps 40000`)")
        require(int(task.get("local_steps", 0)) >= MEASURED,
                f"{stem} (limit {cpu}) trained only {task.get('local_steps')} local steps: too "
                "few to tell its speed", "with a limit that low TensorFlow takes a minute to "
                "start: give the run more steps (`--steps 40000`)")
        cgroup = task.get("cgroup")
        require(cgroup, f"tasks/{stem}.json holds no cgroup counters: its node has no cgroup v2",
                "the nodes must mount cgroup2 at /sys/fs/cgroup (`stat -fc %T /sys/fs/cgroup` "
                "says cgroup2fs)")
        quota = cgroup["cpu.max"].split()[0]
        want = millicores(cpu) * CFS_PERIOD_US // 1000
        require(quota == str(want), f"{stem} ran under cpu.max {cgroup['cpu.max'].strip()!r}, "
                f"not the quota {want} of its {cpu} limit",
                f"that is not the container labctl made: `{HOW}`")
        stat = counters(cgroup["cpu.stat"])
        periods, times = stat.get("nr_periods", 0), stat.get("nr_throttled", 0)
        require(times > 0 and stat.get("throttled_usec", 0) > 0,
                f"the kernel never throttled {stem}: nr_throttled {times} of {periods} periods",
                f"give it a limit far below what it uses: `--cpu-limit {stem.replace('-', ':')}"
                "=100m`")
        rate = float(task.get("steps_per_sec", 0))
        other, best = min(((s, float(t.get("steps_per_sec", 0))) for s, t in free.items()),
                          key=lambda pair: pair[1])
        require(rate < best, f"{stem} (limit {cpu}) trained {rate:g} steps/s, no fewer than "
                f"{other}'s {best:g}", "a limit the worker does not reach throttles nothing: "
                "lower it (100m)")
        done.append(f"{stem} (limit {cpu}, cpu.max {quota}) throttled in {times} of {periods} "
                    f"CFS periods for {stat['throttled_usec'] / 1e6:.1f} s, {rate:g} local "
                    f"steps/s against at least {best:g}")
    return "; ".join(done)


# --- 3. the Pending worker ------------------------------------------------------------------------
def pending(api: Any, run: Run, ns: str) -> str:
    """The scheduler's own words: kube-scheduler records reason FailedScheduling on the pod
    (pkg/scheduler/schedule_one.go) with its FitError, `0/N nodes are available: ...`, where
    the NodeResourcesFit plugin's reason for a node short of CPU is `Insufficient cpu`
    (pkg/scheduler/framework/plugins/noderesources/fit.go)."""
    requests = options(run, "cpu_request")
    require(requests, "no task of this run had a CPU request of its own", f"`{HOW}`")
    done = []
    for name, cpu in sorted(requests.items()):
        seen = ((run.meta.get("pods") or {}).get(name) or {}).get("pods") or []
        unscheduled = [p["name"] for p in seen if not p.get("node")]
        nodes = sorted({str(p.get("node")) for p in seen if p.get("node")})
        require(unscheduled, f"{name} (CPU request {cpu}) was scheduled, on "
                f"{', '.join(nodes) or 'no recorded node'}", "ask for more CPU than any node "
                "has: `--cpu-request worker:2=64` (`kubectl describe nodes` shows Allocatable)")
        events = [e for pod in unscheduled
                  for e in api.list("Event", ns, field_selector=f"involvedObject.name={pod}")
                  if e.get("reason") == "FailedScheduling"]
        require(events, f"no FailedScheduling event on {name}'s pod {unscheduled[-1]}",
                f"events last an hour (the API server's --event-ttl): `{HOW}` again")
        said = [str(e.get("message") or "") for e in events]
        short = next((m for m in said if "Insufficient cpu" in m), None)
        require(short, f"{name}'s pod {unscheduled[-1]} was Pending for another reason: "
                f"{said[-1]}", "the request must be CPU that no node has free: "
                "`--cpu-request worker:2=64`")
        done.append(f"{name} (request {cpu}) stayed Pending: {short}")
    return "; ".join(done)


def check(run: Run) -> str:
    meta = run.meta
    ns = meta.get("namespace")
    require(meta.get("target") == "k8s" and ns, f"this run used the {meta.get('target')} target",
            f"run it on the cluster: `{HOW}`")
    step = checks.check_steps(run, run.checkpoint("checkpoints"))
    from labctl.k8s.api import Api, ClusterError

    try:
        api = Api(meta.get("kubeconfig") or None)
        watched = scalars(api, ns, step)
        starved = pending(api, run, ns)
    except ClusterError as err:
        raise Failed(f"cannot ask the cluster: {err}", "is it up? (`vagrant status`)") from None
    return "; ".join((watched, throttled(run, accounted(run, step)), starved))


if __name__ == "__main__":
    checks.main(check, "read `labctl logs 15` and `kubectl -n NAMESPACE get pods,events`")
