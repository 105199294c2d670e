"""Every Molecule scenario under molecule/ (found, not listed), run with `molecule test`.

Each scenario creates systemd containers from the local test images, converges its role,
converges again to prove idempotence, runs its testinfra checks (tests/infra) and destroys the
containers. Without Docker the tests skip loudly; in CI (CI=true) that is a failure.
"""

from __future__ import annotations

import pytest
from _venv import REPO, run

SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


@pytest.mark.molecule
@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario: str, require_docker: None) -> None:
    done = run("molecule", "test", "--scenario-name", scenario, timeout=1800)
    assert done.returncode == 0, (
        f"molecule test -s {scenario} failed (rc {done.returncode}); last output:\n"
        + (done.stdout + done.stderr)[-8000:]
    )


def test_scenarios_are_found() -> None:
    assert {"common", "containerd"} <= set(SCENARIOS)
