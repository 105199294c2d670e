"""Every Molecule scenario under molecule/ (found, not listed), run with `molecule test`.

Each scenario creates systemd containers from the local test images, converges its role,
converges again to prove idempotence, runs its testinfra checks (tests/infra) and destroys the
containers. Without Docker the tests skip loudly; in CI (CI=true) that is a failure.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv/bin"
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


@pytest.mark.molecule
@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario: str, require_docker: None) -> None:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"}
    env["NO_COLOR"] = "1"
    done = subprocess.run(
        [str(BIN / "molecule"), "test", "--scenario-name", scenario],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, (
        f"molecule test -s {scenario} failed (rc {done.returncode}); last output:\n"
        + (done.stdout + done.stderr)[-8000:]
    )


def test_scenarios_are_found() -> None:
    assert {"common", "containerd"} <= set(SCENARIOS)
