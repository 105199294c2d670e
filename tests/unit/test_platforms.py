"""Every laptop the README supports can install the `labs` extra: each pinned requirement whose
marker applies there resolves to a binary wheel on the package index, for every accepted Python.
Resolution only (`pip install --dry-run --report`, metadata, no download of the wheels)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labctl import platforms, versions, wheelhouse


def resolve(requirement: str, laptop: platforms.Laptop, python: str, tmp: Path) -> str | None:
    """The wheel pip would install, or None when the index has none for that platform."""
    report = tmp / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps",
         *wheelhouse.platform_args(laptop, python),
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
    missing = [r for r in wheelhouse.requirements(laptop.sys_platform, laptop.machine, python)
               if resolve(r, laptop, python, tmp_path) is None]
    assert missing == [], f"no wheel on {laptop.name} for Python {python}: {missing}"


def test_an_unsupported_laptop_really_has_no_tensorflow(tmp_path: Path) -> None:
    """The README says Intel Macs cannot run TF 2.21; the day a wheel appears, this fails."""
    for laptop in (p for p in platforms.LAPTOPS if not p.supported and p.sys_platform != "win32"):
        tf = next(r for r in wheelhouse.requirements(laptop.sys_platform, laptop.machine, "3.11")
                  if r.startswith("tensorflow"))
        assert resolve(tf, laptop, "3.11", tmp_path) is None, laptop.name


def test_tensorflow_cpu_is_chosen_only_where_it_exists() -> None:
    """And at versions.yml's tensorflow_version: pyproject.toml cannot read that file."""
    tf = versions.get("tensorflow_version")
    assert f"tensorflow-cpu=={tf}" in wheelhouse.requirements("linux", "x86_64", "3.11")
    for where in (("linux", "aarch64"), ("darwin", "arm64"), ("win32", "AMD64")):
        names = wheelhouse.requirements(*where, "3.11")
        assert f"tensorflow=={tf}" in names and f"tensorflow-cpu=={tf}" not in names
