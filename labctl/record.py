"""The run record: `run.json`, the one description of a run that labctl writes and every reader
(`labctl list/clean/check`, `make bench`, the checks' helper labs/labkit/checks.py) reads.

Fields are flat and named once here; a target fills the ones that apply to it and leaves the
rest None. A file written by a newer labctl (a higher `version`) is refused by its readers
rather than misread.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.errors import UsageError

VERSION = 1
FILE = "run.json"


@dataclass
class RunRecord:
    lab: str
    target: str | None = None  # a states.Target; None for `labctl launch`
    run_id: str | None = None
    status: str | None = None  # a states.RunStatus, or "starting" while k8s objects are made
    reason: str | None = None
    failed_task: str | None = None
    # What was asked: the CLI's options, replica counts, the program's args.
    options: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)
    success: str | None = None  # the task whose exit ends the run
    shutdown: str | None = None  # a states.Shutdown
    command: list[str] | None = None  # `labctl launch` only
    # The launcher and its clock.
    launcher_pid: int | None = None
    started: str | None = None
    finished: str | None = None
    wall_time_s: float | None = None
    # The controller's snapshot.
    tasks: list[dict[str, Any]] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)
    restarts: list[dict[str, Any]] = field(default_factory=list)
    global_step: int | None = None
    # Local runs: peak memory per task and for the run (labctl.memory).
    memory: dict[str, Any] | None = None
    # Where the tasks ran: the TF cluster spec, and what the docker and k8s targets made.
    cluster: dict[str, list[str]] | None = None
    namespace: str | None = None
    image: str | None = None
    network: str | None = None
    aliases: dict[str, str] | None = None
    api_server: str | None = None
    kubeconfig: str | None = None
    namespace_created: bool | None = None
    created: list[str] | None = None
    pods: dict[str, Any] | None = None
    collect: dict[str, Any] | None = None
    events: list[str] | None = None
    version: int = VERSION

    def update(self, **changes: Any) -> RunRecord:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        data = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """Unknown keys are dropped; a missing `lab` reads as ""."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        return cls(**{"lab": "", **known})


class NewerRecord(UsageError):
    """run.json from a newer labctl: one line naming the fix, not a misread."""


def load(path: Path) -> RunRecord | None:
    """The record in `path` (a run.json), None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if int(data.get("version", VERSION)) > VERSION:
        raise NewerRecord(f"{path} was written by a newer labctl (record version "
                          f"{data['version']} > {VERSION}): upgrade labctl")
    return RunRecord.from_dict(data)
