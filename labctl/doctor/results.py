"""What a doctor check returns, and how a list of them is run and shown: one aligned line per
check (its fix after it), a one-line verdict, or one JSON document; the exit code."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TextIO

from labctl.errors import UsageError

SCHEMA = 1  # the JSON document's "doctor" key: bumped when a key changes meaning


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"  # worth fixing, does not block the day
    FAIL = "fail"  # blocks the day: exit 1
    SKIP = "skip"  # not run: a check it depends on failed, or it does not apply here


@dataclass(frozen=True)
class Result:
    status: Status
    detail: str  # one line: what was found
    fix: str = ""  # one line: what to do (empty when nothing is to be done)


def ok(detail: str) -> Result:
    return Result(Status.OK, detail)


def warn(detail: str, fix: str) -> Result:
    return Result(Status.WARN, detail, fix)


def fail(detail: str, fix: str) -> Result:
    return Result(Status.FAIL, detail, fix)


def skip(detail: str) -> Result:
    return Result(Status.SKIP, detail)


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[], Result]


@dataclass(frozen=True)
class Row:
    """A check that ran."""

    name: str
    result: Result
    seconds: float


def run_one(check: Check) -> Row:
    """Run a check; whatever it raises becomes its FAIL line, never a traceback."""
    started = time.monotonic()
    try:
        result = check.run()
    except UsageError as exc:  # labctl's own one-line errors already say what to do
        result = fail(str(exc), "")
    except Exception as exc:
        result = fail(f"the check itself broke: {type(exc).__name__}: {' '.join(str(exc).split())}",
                      "send this line to the instructor")
    return Row(check.name, result, time.monotonic() - started)


def line(name: str, result: Result, width: int) -> str:
    """`WORD  name  detail; fix: ...`, the name column `width` wide."""
    text = f"{result.status.upper():<4}  {name:<{width}}  {result.detail}"
    return text + (f"; fix: {result.fix}" if result.fix and result.status != Status.OK else "")


def counts(rows: Sequence[Row]) -> dict[str, int]:
    return {s.value: sum(r.result.status == s for r in rows) for s in Status}


def exit_code(rows: Sequence[Row]) -> int:
    return 1 if any(r.result.status == Status.FAIL for r in rows) else 0


def verdict(rows: Sequence[Row]) -> str:
    n = counts(rows)
    failed = [r.name for r in rows if r.result.status == Status.FAIL]
    if failed:
        return (f"NOT READY: {len(failed)} check(s) failed ({', '.join(failed)}); fix the FAIL "
                "lines, then run `labctl doctor` again")
    warned = f", {n['warn']} warning(s) worth fixing" if n["warn"] else ""
    return f"READY: {n['ok']} check(s) ok{warned}"


def document(rows: Sequence[Row], cluster: bool) -> dict[str, Any]:
    """The --json document; its keys are stable (SCHEMA)."""
    return {
        "doctor": SCHEMA,
        "cluster": cluster,
        "ready": exit_code(rows) == 0,
        "exit_code": exit_code(rows),
        "verdict": verdict(rows),
        "counts": counts(rows),
        "checks": [{"name": r.name, "status": r.result.status.value, "detail": r.result.detail,
                    "fix": r.result.fix, "seconds": round(r.seconds, 2)} for r in rows],
    }


def run_checks(checks: Sequence[Check], as_json: bool, cluster: bool,
               out: TextIO | None = None) -> int:
    """Run every check in order: text lines as each ends, then the verdict; or one JSON
    document at the end. The exit code."""
    out = out or sys.stdout
    width = max((len(c.name) for c in checks), default=0)
    rows = []
    for check in checks:
        row = run_one(check)
        rows.append(row)
        if not as_json:
            print(line(row.name, row.result, width), file=out, flush=True)
    if as_json:
        print(json.dumps(document(rows, cluster), indent=2), file=out)
    else:
        print(verdict(rows), file=out)
    return exit_code(rows)


