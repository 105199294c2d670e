"""Run the project venv's command-line tools (ansible-playbook, molecule, the linters) the way the
tests need them: from the repo root, with the venv first on PATH, output captured, no colour."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"


def run(
    tool: str, *args: str | Path, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `tool` from the venv with `args`; `env` adds environment variables."""
    environment = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "NO_COLOR": "1"}
    environment.update(ANSIBLE_NOCOLOR="1", **env)
    return subprocess.run(
        [str(BIN / tool), *(str(a) for a in args)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
