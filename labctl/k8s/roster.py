"""The instructor's view of a classroom: per attendee the last lab run on the cluster, its state
and check verdict, the pods that are stuck and why, and the time since the last activity.

Everything comes from the cluster: the runs' Jobs and pods (labelled by labctl), their waiting
reasons and scheduling conditions, and the verdicts `labctl check` records in the ConfigMap
VERDICTS of the attendee's namespace (lab, verdict, run, time; nothing personal).
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from labctl.k8s.classroom import ATTENDEE_LABEL, LABEL

VERDICTS = "labctl-verdicts"
STUCK = {"ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "CreateContainerConfigError"}
REFRESH_S = 10


def _time(stamp: str | None) -> datetime | None:
    """metav1.Time: RFC 3339 in UTC, to the second (2026-12-03T10:00:00Z)."""
    return datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC) \
        if stamp else None


@dataclass
class Row:
    attendee: str
    namespace: str
    lab: str = "-"
    state: str = "no run yet"
    verdict: str = "-"
    problems: list[str] = field(default_factory=list)
    idle_s: float | None = None  # since the newest pod, Job or verdict


def _job_state(job: dict[str, Any]) -> str:
    for cond in job.get("status", {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return "succeeded" if cond["type"] == "Complete" else "failed"
    return "running"


def _problems(pods: list[dict[str, Any]]) -> list[str]:
    found = []
    for pod in pods:
        name, status = pod["metadata"]["name"], pod.get("status", {})
        for c in status.get("containerStatuses") or []:
            waiting = (c.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK:
                found.append(f"{name}: {waiting['reason']}")
        if status.get("phase") == "Pending":
            for cond in status.get("conditions") or []:
                if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                    found.append(f"{name}: Pending ({cond.get('message') or cond.get('reason')})")
    return found


def row(api: Any, namespace: dict[str, Any], now: datetime) -> Row:
    meta = namespace["metadata"]
    ns = meta["name"]
    who = meta.get("annotations", {}).get("labctl/attendee-name") or \
        meta["labels"].get(ATTENDEE_LABEL, ns)
    out = Row(who, ns)
    jobs = api.list("Job", ns, "labctl/lab")
    pods = api.list("Pod", ns)
    verdicts = {k: json.loads(v) for k, v in
                ((api.read("ConfigMap", VERDICTS, ns) or {}).get("data") or {}).items()}
    stamps = [_time(o["metadata"].get("creationTimestamp")) for o in jobs + pods]
    stamps += [_time(v.get("at")) for v in verdicts.values()]
    if jobs:
        newest = max(jobs, key=lambda j: j["metadata"].get("creationTimestamp") or "")
        out.lab = newest["metadata"]["labels"]["labctl/lab"]
        run = newest["metadata"]["labels"].get("labctl/run-id")
        same_run = [j for j in jobs if j["metadata"]["labels"].get("labctl/run-id") == run]
        states = {_job_state(j) for j in same_run}
        out.state = "failed" if "failed" in states else "running" if "running" in states \
            else "succeeded"
    latest = max(verdicts.items(), key=lambda kv: kv[1].get("at", ""), default=None)
    if latest and (out.lab == "-" or latest[0] == out.lab):
        if out.lab == "-":  # its run was cleaned up; the verdict stays
            out.state = "checked"
        out.lab, out.verdict = latest[0], latest[1].get("verdict", "-")
    out.problems = _problems(pods)
    known = [s for s in stamps if s is not None]
    out.idle_s = (now - max(known)).total_seconds() if known else None
    return out


def rows(api: Any, now: datetime | None = None) -> list[Row]:
    now = now or datetime.now(UTC)
    spaces = api.list("Namespace", selector=f"{LABEL}=true")
    return sorted((row(api, ns, now) for ns in spaces), key=lambda r: r.attendee.lower())


def idle(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def table(found: list[Row]) -> list[list[str]]:
    """Header and one line per attendee, as text cells."""
    head = ["attendee", "namespace", "lab", "state", "check", "idle", "stuck"]
    return [head] + [[r.attendee, r.namespace, r.lab, r.state, r.verdict, idle(r.idle_s),
                      "; ".join(r.problems) or "-"] for r in found]


def as_json(found: list[Row]) -> str:
    return json.dumps([asdict(r) for r in found], indent=2)


def page(found: list[Row], now: datetime) -> str:
    """The same table as a page that reloads itself every REFRESH_S seconds."""
    head, *body = table(found)
    e = html.escape

    def cls(r: list[str]) -> str:
        return "stuck" if r[6] != "-" or r[3] == "failed" or r[4] == "FAIL" else \
            "done" if r[4] == "PASS" else ""

    lines = "\n".join(f"<tr class=\"{cls(r)}\">" + "".join(f"<td>{e(c)}</td>" for c in r)
                      + "</tr>" for r in body)
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"refresh\" content=\"{REFRESH_S}\"><title>Classroom</title>\n"
            "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
            ".stuck{background:#fdd}.done{background:#dfd}</style></head><body>\n"
            f"<h1>Classroom: {len(body)} attendees</h1>\n"
            f"<p>{now:%H:%M:%S} UTC, every {REFRESH_S} s</p>\n<table>\n<tr>"
            + "".join(f"<th>{e(c)}</th>" for c in head) + f"</tr>\n{lines}\n</table>\n"
            "</body></html>\n")


def record_verdict(api: Any, namespace: str, lab: str, verdict: str, run_id: str,
                   now: datetime | None = None) -> None:
    """Keep `labctl check`'s verdict in the attendee's namespace for the instructor's view."""
    stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
    entry = json.dumps({"verdict": verdict, "run": run_id, "at": stamp})
    current = api.read("ConfigMap", VERDICTS, namespace)
    if current is None:
        api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": VERDICTS, "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "labctl"}}, "data": {lab: entry}})
        return
    current["data"] = {**(current.get("data") or {}), lab: entry}
    api.replace(current)
