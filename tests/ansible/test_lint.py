"""yamllint and ansible-lint (production profile) over the whole repository, with the settings in
.yamllint and .ansible-lint: roles, playbooks, inventories, Molecule scenarios, manifests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv/bin"

# ansible-lint loads every role, playbook and collection it meets: tens of seconds.
pytestmark = pytest.mark.slow


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "NO_COLOR": "1"}
    return subprocess.run(
        [str(a) for a in args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_yamllint_whole_repository() -> None:
    done = run(BIN / "yamllint", "--format", "parsable", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ansible_lint_production_profile() -> None:
    done = run(BIN / "ansible-lint", "--nocolor")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr
