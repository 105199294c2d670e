"""What a test needs from the host (Docker, vagrant, a built image), and the one rule for when it
is missing: skip loudly on a developer's machine, fail in CI (CI=true), where `make test`
installs everything."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import NoReturn

import pytest


def missing(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(f"SKIPPED LOUDLY: {reason}")


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def vagrant_path() -> str:
    path = shutil.which("vagrant")
    if path is None:
        missing("vagrant is not installed (make tools installs it: apt-get install -y vagrant)")
    return path
