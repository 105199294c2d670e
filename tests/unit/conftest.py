"""Fixtures: the real `labctl` command against the fixture labs, state in a temporary dir."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from _labctl import LABCTL, labctl_env, leftovers


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def labctl(state: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """labctl(*args, env={...}) -> CompletedProcess; asserts afterwards that the command left
    no process of its runs behind (unless reaped=False)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
            cwd: Path | None = None, reaped: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*LABCTL, *args], env=labctl_env(state, **(env or {})),
                              capture_output=True, text=True, timeout=timeout, check=False,
                              cwd=cwd)
        if reaped:
            assert leftovers(state) == [], f"processes left behind by labctl {' '.join(args)}"
        return proc

    return run
