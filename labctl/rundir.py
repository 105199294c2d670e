"""Run directories: `.labctl/runs/<lab>/<run-id>/` with run.json, logs/, output/, check.json."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl import record
from labctl.errors import UsageError
from labctl.labs import state_dir
from labctl.record import RunRecord
from labctl.states import RunStatus
from labctl.tasks import TaskSpec

LATEST = "latest"


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


def runs_root(group: str) -> Path:
    """All runs of one lab (or `launch`)."""
    return state_dir() / "runs" / group


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def output(self) -> Path:
        return self.path / "output"

    def log(self, task: TaskSpec) -> Path:
        return self.logs / f"{task.slug}.log"

    def record(self) -> RunRecord | None:
        """The run's run.json, None while there is none."""
        return record.load(self.path / record.FILE)

    def save(self, run: RunRecord) -> None:
        """The one way run.json is written."""
        self._replace(record.FILE, run.to_json())

    def read(self, name: str) -> dict[str, Any]:
        """Another JSON file of the run (check.json)."""
        try:
            data = json.loads((self.path / name).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write(self, data: dict[str, Any], name: str) -> None:
        self._replace(name, json.dumps(data, indent=2) + "\n")

    def _replace(self, name: str, text: str) -> None:
        """Atomic replace, so a reader never sees half a file."""
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(self.path / name)


def create(group: str, now: float | None = None) -> RunDir:
    """A new, empty run directory, made the group's `latest`."""
    root = runs_root(group)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now or time.time()))
    for n in range(100):
        path = root / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        (path / "logs").mkdir()
        (path / "output").mkdir()
        link = root / LATEST
        tmp = root / f".{LATEST}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(path.name)
        tmp.replace(link)
        return RunDir(path)
    raise RuntimeError(f"cannot create a run directory under {root}")


def find(group: str, run_id: str | None = None, start: str | None = None) -> RunDir:
    """The named run, or the latest one; UsageError when there is none (naming `start`, the
    command that makes one)."""
    root = runs_root(group)
    path = root / (run_id or LATEST)
    if run_id and (run_id in (".", "..") or "/" in run_id):
        raise UsageError(f"bad run id {run_id!r}")
    if not path.is_dir():
        if run_id:
            raise UsageError(f"no run {run_id!r} of {group}; runs are under {root}")
        start = start or f"labctl run {group}"
        raise UsageError(f"{group} has no run yet: start one with `{start}`")
    return RunDir(path.resolve())


def latest(group: str) -> RunDir | None:
    path = runs_root(group) / LATEST
    return RunDir(path.resolve()) if path.is_dir() else None


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_active(run: RunDir) -> bool:
    rec = run.record()
    return rec is not None and rec.status == RunStatus.RUNNING and \
        pid_alive(rec.launcher_pid or 0)


def reap_leftovers() -> list[int]:
    """Kill processes of runs whose launcher is gone (labctl was SIGKILLed); their pids."""
    from labctl import procs

    orphans = [pid for pid, path in procs.run_processes().items()
               if not is_active(RunDir(path))]
    procs.kill(orphans)
    return orphans


def active_runs(group: str | None = None) -> list[RunDir]:
    """Runs whose launcher is still alive (status running and its pid exists)."""
    root = state_dir() / "runs"
    groups = [root / group] if group else sorted(p for p in root.glob("*") if p.is_dir())
    found = []
    for g in groups:
        for path in sorted(g.glob("*/run.json")):
            run = RunDir(path.parent)
            if is_active(run):
                found.append(run)
    return found
