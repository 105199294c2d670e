"""Running a lab's check.py against a run directory and recording the verdict."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from labctl.errors import UsageError
from labctl.labs import Lab
from labctl.local import task_env
from labctl.rundir import RunDir, iso


@dataclass(frozen=True)
class Verdict:
    passed: bool
    message: str  # the PASS:/FAIL: line, or what went wrong running the check
    hint: str
    exit_code: int


def parse_output(output: str, exit_code: int) -> Verdict:
    """The check contract: `PASS: ...` or `FAIL: ...` + `hint: ...`, exit 0 / 1 / 2."""
    lines = [line.strip() for line in output.splitlines()]
    verdict = next((ln for ln in lines if ln.startswith(("PASS:", "FAIL:"))), "")
    hint = next((ln.removeprefix("hint:").strip() for ln in lines if ln.startswith("hint:")), "")
    passed = exit_code == 0 and verdict.startswith("PASS:")
    if not verdict:
        tail = " / ".join(ln for ln in lines[-3:] if ln) or "no output"
        verdict = f"FAIL: the check printed no verdict (exit {exit_code}): {tail}"
    elif not passed and verdict.startswith("PASS:"):
        verdict = f"FAIL: the check said PASS but exited {exit_code}"
    return Verdict(passed, verdict, hint, exit_code)


def run_check(lab: Lab, run: RunDir) -> Verdict:
    """`python labs/NN-name/check.py RUN_DIR`; the verdict is written to RUN_DIR/check.json."""
    if not (lab.path / "check.py").is_file():
        raise UsageError(f"lab {lab.name} has no check.py")
    collect = run.read().get("collect") or {}
    copied_by_hand = run.output.is_dir() and any(run.output.iterdir())
    if collect.get("copied") is False and not copied_by_hand:  # results still on the volume
        verdict = Verdict(False, "FAIL: the run's results were not copied from the cluster "
                          f"({collect.get('reason')}): nothing to judge",
                          f"copy them, then check again: {collect.get('command')}", 1)
        _record(lab, run, verdict)
        return verdict
    proc = subprocess.run(
        [sys.executable, str(lab.path / "check.py"), str(run.path)],
        env=task_env({}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    verdict = parse_output(proc.stdout + proc.stderr, proc.returncode)
    _record(lab, run, verdict)
    return verdict


def _record(lab: Lab, run: RunDir, verdict: Verdict) -> None:
    run.write(
        {"lab": lab.name, "run_id": run.run_id, "checked": iso(time.time()), **asdict(verdict)},
        "check.json",
    )
