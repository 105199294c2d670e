"""Run the rehearsal's steps in order, each into a log of its own, streaming its output."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from labctl.checks import EXIT_SKIP
from labctl.rehearse.plan import RECAP, Step

PASSED, FAILED, SKIPPED, NOT_RUN = "passed", "failed", "skipped", "not run"
# Lines that say why a step failed, in the tools' own words (labctl, pytest, Ansible, Vagrant).
REASON = re.compile(r"^(labctl: |FAILED |fatal: |ERROR|cluster config:|E   )")


@dataclass(frozen=True)
class Outcome:
    name: str
    stage: str
    status: str
    seconds: float
    reason: str
    log: str  # relative to the rehearsal directory


def changed_hosts(output: str) -> str:
    """The idempotence judge: every host of the last PLAY RECAP reports changed=0."""
    recap = output.rsplit("PLAY RECAP", 1)
    if len(recap) < 2:
        return "no PLAY RECAP in the output: the provisioner did not run"
    changed = [
        f"{m['host']} ({m['changed']})" for m in RECAP.finditer(recap[1]) if m["changed"] != "0"
    ]
    return f"changed on {', '.join(changed)}: a role is not idempotent" if changed else ""


JUDGES: dict[str, Callable[[str], str]] = {"idempotent": changed_hosts}


def first_reason(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    named = [line for line in lines if REASON.match(line)]
    return (named or lines or ["no output"])[0][:300]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def run(
    steps: list[Step], out: Path, env: dict[str, str], cwd: Path, echo: Callable[[str], None]
) -> list[Outcome]:
    """Every step in order; after a failure the rest are not run, the cluster is kept."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    for number, step in enumerate(steps, 1):
        log = Path("logs") / f"{number:02d}-{slug(step.name)}.log"
        failed = any(o.status == FAILED for o in outcomes)
        if step.skip:
            outcome = Outcome(step.name, step.stage, SKIPPED, 0.0, step.skip, "")
        elif failed:
            why = "kept for inspection" if step.stage == "teardown" else "an earlier step failed"
            outcome = Outcome(step.name, step.stage, NOT_RUN, 0.0, why, "")
        else:
            echo(f"rehearse: [{number}/{len(steps)}] {step.name}: {' '.join(step.argv)}")
            outcome = execute(step, out / log, {**env, **step.env}, cwd, echo, str(log))
        outcomes.append(outcome)
        echo(
            f"rehearse: [{number}/{len(steps)}] {step.name}: {outcome.status}"
            f" ({outcome.seconds:.0f} s)" + (f": {outcome.reason}" if outcome.reason else "")
        )
    return outcomes


def execute(
    step: Step, log: Path, env: dict[str, str], cwd: Path, echo: Callable[[str], None], shown: str
) -> Outcome:
    start = time.monotonic()
    with log.open("w") as sink:
        try:
            proc = subprocess.Popen(
                step.argv, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, bufsize=1,
            )  # fmt: skip
        except FileNotFoundError as error:
            return Outcome(step.name, step.stage, FAILED, 0.0, str(error), shown)
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            echo(line.rstrip("\n"))
        code = proc.wait()
    seconds = time.monotonic() - start
    output = log.read_text()
    if code == EXIT_SKIP and step.stage == "labs":
        skipped = [line for line in output.splitlines() if line.startswith("labctl: skipped: ")]
        reason = skipped[-1].removeprefix("labctl: skipped: ") if skipped else "skipped"
        return Outcome(step.name, step.stage, SKIPPED, seconds, reason, shown)
    if code != 0:
        return Outcome(step.name, step.stage, FAILED, seconds, first_reason(output), shown)
    problem = JUDGES[step.judge](output) if step.judge else ""
    return Outcome(step.name, step.stage, FAILED if problem else PASSED, seconds, problem, shown)
