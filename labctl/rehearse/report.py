"""The go/no-go table, as Markdown and JSON, and each stage's bring-up time."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

from labctl.rehearse.plan import Cluster
from labctl.rehearse.runner import FAILED, Outcome

# ansible.posix.profile_tasks prints this after every TASK header: the clock, the last task's
# duration, and the time since the playbook started.
TIMESTAMP = re.compile(
    r"^\w+ \d{2} \w+ \d{4}\s+[\d:]+ [+-]\d{4} \([\d:.]+\)\s+(\d+):(\d+):([\d.]+) "
)
PLAY = re.compile(r"^PLAY \[(.*)\] \*+")


def stage_times(output: str) -> list[tuple[str, float]]:
    """Seconds spent in each play (a stage of playbooks/site.yml), in order, from the profile
    timestamps; a play's time runs from its first task to the next play's first task."""
    marks: list[tuple[str, float]] = []  # (play, elapsed at its first task)
    play, fresh, end = "", False, 0.0
    for line in output.splitlines():
        if match := PLAY.match(line):
            play, fresh = match.group(1), True
        elif match := TIMESTAMP.match(line):
            hours, minutes, seconds = match.groups()
            end = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            if fresh:
                marks.append((play, end))
                fresh = False
    if not marks:
        return []  # no task ran (a bring-up that failed before Ansible, or no profile output)
    times: dict[str, float] = {}
    for (name, started), (_, following) in zip(marks, [*marks[1:], ("", end)], strict=True):
        times[name] = times.get(name, 0.0) + following - started
    return list(times.items())


def go(outcomes: list[Outcome]) -> bool:
    return not any(o.status == FAILED for o in outcomes)


def write(
    out: Path, cluster: Cluster, outcomes: list[Outcome], stages: list[tuple[str, float]]
) -> None:
    verdict = "GO" if go(outcomes) else "NO-GO"
    total = sum(o.seconds for o in outcomes)
    lines = [
        f"# Rehearsal: {verdict}",
        "",
        f"Cluster: {len(cluster.nodes)} nodes on {cluster.provider} ({', '.join(cluster.nodes)}); "
        f"total {total / 60:.0f} min.",
        "",
        "| stage | step | status | time | reason | log |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {o.stage} | {o.name} | {o.status} | {o.seconds:.0f} s | {o.reason.replace('|', '/')} "
        f"| {o.log} |"
        for o in outcomes
    ]
    if stages:
        lines += ["", "Bring-up time per stage (`vagrant up`):", "", "| play | time |", "|---|---|"]
        lines += [f"| {name} | {seconds:.0f} s |" for name, seconds in stages]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps({
        "verdict": verdict,
        "cluster": asdict(cluster),
        "steps": [asdict(o) for o in outcomes],
        "bring_up": [{"play": name, "seconds": round(s, 1)} for name, s in stages],
    }, indent=2) + "\n")  # fmt: skip
