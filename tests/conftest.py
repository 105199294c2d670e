"""Suite-wide settings: where the repo is, how Docker-backed tests behave without Docker, and a
runtime directory of the session's own for labctl's pre-imported interpreters."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from _prereqs import docker_available, missing, vagrant_path

REPO = Path(__file__).resolve().parents[1]

# tests/infra holds testinfra suites that need target hosts (`make verify`, Molecule verifiers);
# they are run explicitly with --hosts, never collected by the plain suite.
collect_ignore = ["infra"]
_RUNTIME = pytest.StashKey[tuple[str, str | None]]()  # (the session's, the one before)


def pytest_configure(config: pytest.Config) -> None:
    """Every labctl the tests start shares the session's servers (labctl.preload), as one user's
    commands do, and none of the user's own: XDG_RUNTIME_DIR is the session's."""
    runtime = tempfile.mkdtemp(prefix="labctl-tests-")
    config.stash[_RUNTIME] = (runtime, os.environ.get("XDG_RUNTIME_DIR"))
    os.environ["XDG_RUNTIME_DIR"] = runtime


def pytest_unconfigure(config: pytest.Config) -> None:
    from labctl import preload

    runtime, before = config.stash[_RUNTIME]
    preload.stop_all()
    shutil.rmtree(runtime, ignore_errors=True)
    if before is None:
        os.environ.pop("XDG_RUNTIME_DIR", None)
    else:
        os.environ["XDG_RUNTIME_DIR"] = before



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
