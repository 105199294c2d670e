"""The parent-death shim (labctl/shim.py) on its own: it is invisible to the task's exit status
and its output, and the mechanism switch refuses what this OS cannot do."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from labctl import local
from labctl.errors import UsageError


def shim(*program: str) -> subprocess.CompletedProcess[str]:
    read, write = os.pipe()
    try:
        return subprocess.run([sys.executable, "-m", "labctl.shim", str(read), "--", *program],
                              pass_fds=(read,), capture_output=True, text=True, timeout=30,
                              check=False)
    finally:
        os.close(read)
        os.close(write)


@pytest.mark.parametrize(("code", "expected"), [
    ("print('out'); import sys; sys.exit(3)", 3),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", -9),
    ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", -15),
])
def test_the_shim_exits_as_its_program_did(code: str, expected: int) -> None:
    done = shim(sys.executable, "-c", code)
    assert done.returncode == expected
    assert done.stdout == ("out\n" if expected == 3 else "")


def test_the_shim_kills_its_group_when_labctl_is_gone() -> None:
    read, write = os.pipe()
    os.close(write)  # labctl "died" before the shim started: EOF at once
    done = subprocess.run([sys.executable, "-m", "labctl.shim", str(read), "--", "sleep", "30"],
                          pass_fds=(read,), timeout=10, check=False, start_new_session=True)
    os.close(read)
    assert done.returncode == -9


def test_bad_shim_usage_is_exit_2() -> None:
    done = subprocess.run([sys.executable, "-m", "labctl.shim", "sleep"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 2 and done.stderr.startswith("usage: python -m labctl.shim FD")


def test_the_mechanism_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(local.SUPERVISION_ENV, raising=False)
    assert local.mechanism() == "pdeathsig"  # Linux
    monkeypatch.setattr(sys, "platform", "darwin")
    assert local.mechanism() == "pipe"
    monkeypatch.setenv(local.SUPERVISION_ENV, "pdeathsig")
    with pytest.raises(UsageError, match="pdeathsig needs Linux: use pipe"):
        local.mechanism()
    monkeypatch.setenv(local.SUPERVISION_ENV, "cgroups")
    with pytest.raises(UsageError, match="LABCTL_SUPERVISION='cgroups': use one of"):
        local.mechanism()
