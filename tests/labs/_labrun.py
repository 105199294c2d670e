"""Run `labctl` as an attendee does, with its state under a test's own directory, and make sure
no process of that run outlives it."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from labctl import procs

REPO = Path(__file__).resolve().parents[2]
# The labs that run on a laptop (lab.toml kind "local"), in number order.
LOCAL_LABS = sorted(p.parent for p in (REPO / "labs").glob("[0-9][0-9]-*/lab.toml")
                    if tomllib.loads(p.read_text())["kind"] == "local")


def labctl(state: Path, *args: str, env: dict[str, str] | None = None,
           labs: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`labctl ARGS` with its runs under `state`, on the repo's labs or on a copy at `labs`."""
    full_env = {**os.environ, **(env or {}), "LABCTL_STATE_DIR": str(state)}
    full_env.pop("LABCTL_LABS_DIR", None)
    if labs is not None:
        full_env["LABCTL_LABS_DIR"] = str(labs)
    proc = subprocess.run([sys.executable, "-m", "labctl", *args], env=full_env, cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=False)
    left = [pid for pid, run in procs.run_processes().items() if run.is_relative_to(state)]
    assert left == [], f"labctl {' '.join(args)} left processes {left}"
    return proc


def blocks(readme: Path) -> list[tuple[str, str, list[str]]]:
    """(section, fence language, lines) of every fenced block."""
    found: list[tuple[str, str, list[str]]] = []
    section, lang, body = "", None, []
    for line in readme.read_text().splitlines():
        if lang is None and line.startswith("## "):
            section = line
        elif lang is None and line.startswith("```"):
            lang, body = line[3:].strip(), []
        elif lang is not None and line.startswith("```"):
            found.append((section, lang, body))
            lang = None
        elif lang is not None:
            body.append(line)
    return found
