"""`docker(*args)`: the Docker CLI's output, failing the test on a non-zero exit."""

from __future__ import annotations

import subprocess


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout
