"""Suite-wide settings: where the repo is, and how Docker-backed tests behave without Docker."""

from __future__ import annotations

from pathlib import Path

import pytest
from _prereqs import docker_available, missing, vagrant_path

REPO = Path(__file__).resolve().parents[1]

# tests/infra holds testinfra suites that need target hosts (`make verify`, Molecule verifiers);
# they are run explicitly with --hosts, never collected by the plain suite.
collect_ignore = ["infra"]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def require_docker() -> None:
    """Skip loudly without Docker; in CI (CI=true) a missing daemon is a failure, not a skip."""
    if not docker_available():
        missing("no Docker daemon answers (run `make docker`)")


@pytest.fixture(scope="session")
def vagrant() -> str:
    """Debian's vagrant; its absence skips loudly, and fails in CI (make tools installs it)."""
    return vagrant_path()
