"""Helpers for labctl's tests: run the real `labctl` against fixture labs, find leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from _signals import sigint_as_from_a_terminal

from labctl import procs

FIXTURES = Path(__file__).parent / "fixtures"
LABCTL = [sys.executable, "-m", "labctl"]


def labctl_env(state: Path, labs_dir: Path | None = None, **extra: str) -> dict[str, str]:
    return {**os.environ, "LABCTL_LABS_DIR": str(labs_dir or FIXTURES / "labs"),
            "LABCTL_STATE_DIR": str(state), **extra}


def leftovers(state: Path) -> list[int]:
    """Processes still marked as belonging to a run under `state`."""
    return [pid for pid, run in procs.run_processes().items() if run.is_relative_to(state)]


def run_json(state: Path, group: str) -> dict[str, Any]:
    return json.loads((state / "runs" / group / "latest" / "run.json").read_text())


def tasks_by_name(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in meta["tasks"]}


def start(state: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """labctl in the background, for signal tests."""
    return subprocess.Popen([*LABCTL, *args], env=labctl_env(state, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_from_a_terminal)
