"""Suite-wide settings: where the repo is, and how Docker-backed tests behave without Docker."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# tests/infra holds testinfra suites that need target hosts (`make verify`, Molecule verifiers);
# they are run explicitly with --hosts, never collected by the plain suite.
collect_ignore = ["infra"]


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def require_docker() -> None:
    """Skip loudly without Docker; in CI (CI=true) a missing daemon is a failure, not a skip."""
    if docker_available():
        return
    reason = "no Docker daemon answers (run `make docker`)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(f"SKIPPED LOUDLY: {reason}")
