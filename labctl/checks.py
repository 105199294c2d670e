"""Running a lab's check.py against a run directory and recording the verdict."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from labctl import taskenv
from labctl.errors import UsageError
from labctl.labs import Lab
from labctl.rundir import RunDir, iso
from labctl.states import Word

EXIT_SKIP = 3  # a check's, and labctl's, exit code for a skipped run: not a pass, not a failure
VERDICT_EXIT = {Word.PASS: 0, Word.FAIL: 1, Word.SKIP: EXIT_SKIP}


@dataclass(frozen=True)
class Verdict:
    passed: bool
    message: str  # the PASS:/FAIL:/SKIP: line, or what went wrong running the check
    hint: str
    exit_code: int
    skipped: bool = False

    @property
    def word(self) -> Word:
        return Word.SKIP if self.skipped else Word.PASS if self.passed else Word.FAIL


def parse_output(output: str, exit_code: int) -> Verdict:
    """The check contract: `PASS: ...`, `FAIL: ...` + `hint: ...` or `SKIP: ...`; exit 0, 1 or 3
    (2: the run directory is unusable). A verdict whose exit code disagrees is a FAIL."""
    lines = [line.strip() for line in output.splitlines()]
    verdict = next((ln for ln in lines if ln[:5] in {f"{w}:" for w in Word}), "")
    hint = next((ln.removeprefix("hint:").strip() for ln in lines if ln.startswith("hint:")), "")
    said = Word(verdict[:4]) if verdict else Word.FAIL
    if not verdict:
        tail = " / ".join(ln for ln in lines[-3:] if ln) or "no output"
        verdict = f"FAIL: the check printed no verdict (exit {exit_code}): {tail}"
    elif said != Word.FAIL and VERDICT_EXIT[said] != exit_code:
        verdict, said = f"FAIL: the check said {said} but exited {exit_code}", Word.FAIL
    return Verdict(said == Word.PASS, verdict, hint, exit_code, skipped=said == Word.SKIP)


def run_check(lab: Lab, run: RunDir) -> Verdict:
    """`python labs/NN-name/check.py RUN_DIR`; the verdict is written to RUN_DIR/check.json."""
    if not (lab.path / "check.py").is_file():
        raise UsageError(f"lab {lab.name} has no check.py")
    rec = run.record()
    collect = (rec and rec.collect) or {}
    copied_by_hand = run.output.is_dir() and any(run.output.iterdir())
    if collect.get("copied") is False and not copied_by_hand:  # results still on the volume
        verdict = Verdict(False, "FAIL: the run's results were not copied from the cluster "
                          f"({collect.get('reason')}): nothing to judge",
                          f"copy them, then check again: {collect.get('command')}", 1)
        _record(lab, run, verdict)
        return verdict
    proc = subprocess.run(
        [sys.executable, str(lab.path / "check.py"), str(run.path)],
        env=taskenv.local({}),
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
