"""Calls of upstream command-line tools that only a real node runs, checked against what the
pinned upstream version accepts.

fixtures/nvidia-ctk-VERSION-runtime-configure-help.txt is `nvidia-ctk runtime configure --help`
of nvidia-ctk built from NVIDIA/nvidia-container-toolkit at tag vVERSION: re-capture it when
nvidia_gpu_toolkit_version changes (the test below fails until then).
"""

from __future__ import annotations

import re
from pathlib import Path

from _tasks import tasks

from labctl import versions

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def argv_of(path: Path, program: str) -> list[list[str]]:
    """The argv of every ansible.builtin.command task in `path` that runs `program`."""
    found = []
    for task in tasks(path):
        args = task.get("ansible.builtin.command")
        argv = args.get("argv") if isinstance(args, dict) else None
        if argv is None and args:
            argv = (args if isinstance(args, str) else args.get("cmd", "")).split()
        if argv and argv[0] == program:
            found.append([str(a) for a in argv])
    return found


def help_flags(text: str) -> set[str]:
    return set(re.findall(r"(--[a-z][a-z0-9.-]*)", text.split("GLOBAL OPTIONS:")[0]))


def test_nvidia_ctk_is_called_with_flags_of_the_pinned_toolkit() -> None:
    version = versions.get("nvidia_gpu_toolkit_version").split("-")[0]
    fixture = FIXTURES / f"nvidia-ctk-{version}-runtime-configure-help.txt"
    assert fixture.is_file(), f"capture {fixture.name} for the pinned toolkit {version}"
    accepted = help_flags(fixture.read_text())
    calls = [c for path in (REPO / "roles/nvidia_gpu/tasks").glob("*.yml")
             for c in argv_of(path, "nvidia-ctk")]
    assert calls, "no nvidia-ctk call found"
    for argv in calls:
        assert argv[1:3] == ["runtime", "configure"], argv
        used = {a.split("=", 1)[0] for a in argv[3:] if a.startswith("--")}
        assert used <= accepted, f"not flags of nvidia-ctk {version}: {sorted(used - accepted)}"


def test_the_flag_check_catches_an_unknown_flag() -> None:
    """The one that broke the gpu stage: an nvidia-ctk-installer flag, not nvidia-ctk's."""
    accepted = help_flags(next(FIXTURES.glob("nvidia-ctk-*-help.txt")).read_text())
    assert "--drop-in-config" in accepted
    assert "--runtime-config-override" not in accepted
