"""Which laptops run the local labs: one table behind `make labs`'s first check, labctl's
refusal on native Windows, `labctl doctor`, the README's "Which laptop?" (tests/unit/test_doctor.py
holds the two together) and tests/unit/test_platforms.py.

Standard library only: `make labs` runs this file with the system Python before any venv exists.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass

PYTHONS = ("3.11", "3.12", "3.13")  # TensorFlow 2.21's wheels, within pyproject's >=3.11


@dataclass(frozen=True)
class Laptop:
    name: str
    sys_platform: str
    machine: str  # platform.machine() there
    supported: bool
    instead: str = ""  # what to do on an unsupported one


LAPTOPS = (
    Laptop("Linux x86_64 (and WSL2)", "linux", "x86_64", True),
    Laptop("Linux arm64", "linux", "aarch64", True),
    Laptop("macOS Apple Silicon", "darwin", "arm64", True),
    Laptop("macOS Intel", "darwin", "x86_64", False,
           "TensorFlow 2.21 has no macOS x86_64 wheel: run the labs in a Linux VM, or on the "
           "workshop cluster with --target k8s"),
    Laptop("Windows x86_64", "win32", "AMD64", False,
           "labctl needs POSIX processes and signals: use WSL2 with Ubuntu (README: Which "
           "laptop?)"),
)


def find(sys_platform: str, machine: str) -> Laptop | None:
    """The table's row for a platform, None when the table does not know it."""
    return next((p for p in LAPTOPS if (p.sys_platform, p.machine.lower()) ==
                 (sys_platform, machine.lower())), None)


def problem(sys_platform: str = sys.platform, machine: str = platform.machine(),
            python: str = "{}.{}".format(*sys.version_info)) -> str | None:
    """Why the local labs cannot run here, in one line; None when they can."""
    laptop = find(sys_platform, machine)
    if laptop is None:
        return (f"{sys_platform} {machine} is not a supported laptop for the local labs "
                f"(supported: {', '.join(p.name for p in LAPTOPS if p.supported)})")
    if not laptop.supported:
        return f"{laptop.name}: {laptop.instead}"
    if python not in PYTHONS:
        return (f"Python {python}: TensorFlow 2.21 has wheels for Python {', '.join(PYTHONS)}; "
                f"run `make labs PYTHON=python{PYTHONS[-1]}` (or another of them)")
    return None


if __name__ == "__main__":
    reason = problem()
    if reason:
        print(f"make labs: {reason}", file=sys.stderr)
    sys.exit(1 if reason else 0)
