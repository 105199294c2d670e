"""Every laptop the README supports can install the `labs` extra: each pinned requirement whose
marker applies there resolves to a binary wheel on the package index, for every accepted Python.
Resolution only (`pip install --dry-run --report`, metadata, no download of the wheels)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from labctl import platforms, versions

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# pip's --platform takes exact tags. It counts older macOS versions as compatible with the one
# given, not older glibc versions: every manylinux tag the pins' wheels use is listed (glibc
# 2.28 is what Ubuntu 20.04+/Debian 10+ exceed).
MANYLINUX = ("manylinux2014", "manylinux_2_17", "manylinux_2_27", "manylinux_2_28")
TAGS = {
    ("linux", "x86_64"): [f"{tag}_x86_64" for tag in MANYLINUX],
    ("linux", "aarch64"): [f"{tag}_aarch64" for tag in MANYLINUX],
    ("darwin", "arm64"): ["macosx_14_0_arm64"],
    ("darwin", "x86_64"): ["macosx_14_0_x86_64"],
    ("win32", "AMD64"): ["win_amd64"],
}


def requirements(sys_platform: str, machine: str, python: str) -> list[str]:
    """What `pip install .[labs]` asks for on that platform."""
    env = default_environment() | {"sys_platform": sys_platform, "platform_machine": machine,
                                   "python_version": python}
    wanted = [*PYPROJECT["project"]["dependencies"],
              *PYPROJECT["project"]["optional-dependencies"]["labs"]]
    return [f"{r.name}{r.specifier}" for r in map(Requirement, wanted)
            if r.marker is None or r.marker.evaluate(env)]


def resolve(requirement: str, tags: list[str], python: str, tmp: Path) -> str | None:
    """The wheel pip would install, or None when the index has none for that platform."""
    platform_args = [arg for tag in tags for arg in ("--platform", tag)]
    report = tmp / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps",
         "--only-binary=:all:", "--python-version", python, *platform_args,
         "--target", str(tmp / "target"), "--report", str(report), requirement],
        capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        assert "No matching distribution" in done.stderr or "Could not find a version" in \
            done.stderr, done.stderr  # anything else (no index reachable) is not an answer
        return None
    return str(json.loads(report.read_text())["install"][0]["download_info"]["url"]
               ).rsplit("/", 1)[-1]


@pytest.mark.parametrize("python", platforms.PYTHONS)
@pytest.mark.parametrize("laptop", [p for p in platforms.LAPTOPS if p.supported],
                         ids=lambda p: p.name)
def test_the_labs_extra_has_a_wheel_for_every_supported_laptop(
        laptop: platforms.Laptop, python: str, tmp_path: Path) -> None:
    tags = TAGS[(laptop.sys_platform, laptop.machine)]
    missing = [r for r in requirements(laptop.sys_platform, laptop.machine, python)
               if resolve(r, tags, python, tmp_path) is None]
    assert missing == [], f"no wheel on {laptop.name} for Python {python}: {missing}"


def test_an_unsupported_laptop_really_has_no_tensorflow(tmp_path: Path) -> None:
    """The README says Intel Macs cannot run TF 2.21; the day a wheel appears, this fails."""
    for laptop in (p for p in platforms.LAPTOPS if not p.supported and p.sys_platform != "win32"):
        tags = TAGS[(laptop.sys_platform, laptop.machine)]
        tf = next(r for r in requirements(laptop.sys_platform, laptop.machine, "3.11")
                  if r.startswith("tensorflow"))
        assert resolve(tf, tags, "3.11", tmp_path) is None, laptop.name


def test_tensorflow_cpu_is_chosen_only_where_it_exists() -> None:
    """And at versions.yml's tensorflow_version: pyproject.toml cannot read that file."""
    tf = versions.get("tensorflow_version")
    assert f"tensorflow-cpu=={tf}" in requirements("linux", "x86_64", "3.11")
    for where in (("linux", "aarch64"), ("darwin", "arm64"), ("win32", "AMD64")):
        names = requirements(*where, "3.11")
        assert f"tensorflow=={tf}" in names and f"tensorflow-cpu=={tf}" not in names
