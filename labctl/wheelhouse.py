"""The labs' Python wheels for every supported laptop, for a venue without internet.

`make bundle` downloads, for each supported laptop and Python, every wheel that `make labs`
installs (labctl's dependencies, the `labs` extra, pip and the build backend) into one flat
folder, BUNDLE/wheels: pip picks each laptop's files by their tags. `make labs BUNDLE=DIR` then
installs with `pip --no-index --find-links DIR/wheels` and asks no index at all.

pip evaluates the markers of dependencies' dependencies on the machine that downloads, not on
the target (pip's --platform changes only the tags); the top-level requirements' markers are
evaluated here for each target, as `pip install .[labs]` would there.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from urllib.parse import unquote, urlparse

from packaging.markers import default_environment
from packaging.requirements import Requirement

from labctl import platforms
from labctl.labs import REPO

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
FOLDER = "wheels"  # in the bundle
# What `make venv` installs besides the project's requirements and its build backend (which
# build_requirements reads from pyproject.toml): pip itself, which it upgrades first.
TOOLS = ("pip",)


@functools.cache
def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def requirements(sys_platform: str, machine: str, python: str) -> list[str]:
    """What `pip install .[labs]` asks for on that platform."""
    project = _pyproject()["project"]
    env = default_environment() | {"sys_platform": sys_platform, "platform_machine": machine,
                                   "python_version": python}
    wanted = [*project["dependencies"], *project["optional-dependencies"]["labs"]]
    return [f"{r.name}{r.specifier}" for r in map(Requirement, wanted)
            if r.marker is None or r.marker.evaluate(env)]


def build_requirements() -> list[str]:
    """What the editable install of labctl builds with, and pip itself."""
    return [*TOOLS, *_pyproject()["build-system"]["requires"]]


def targets() -> list[tuple[platforms.Laptop, str]]:
    """(laptop, Python) for every supported laptop and accepted Python."""
    return [(laptop, python) for laptop in platforms.LAPTOPS if laptop.supported
            for python in platforms.PYTHONS]


def platform_args(laptop: platforms.Laptop, python: str) -> list[str]:
    tags = TAGS[(laptop.sys_platform, laptop.machine)]
    return ["--only-binary=:all:", "--implementation", "cp", "--python-version", python,
            *(arg for tag in tags for arg in ("--platform", tag))]


def name(laptop: platforms.Laptop, python: str) -> str:
    """A target's name in the bundle's plan and manifest."""
    return f"{laptop.sys_platform}-{laptop.machine}-python{python}"


def target(named: str) -> tuple[platforms.Laptop, str]:
    """The target of that name(); a name no target has is a programming error (KeyError)."""
    return {name(*t): t for t in targets()}[named]


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args, "--quiet",
                           "--disable-pip-version-check"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"pip {args[0]} failed: {last}")


def fetch(laptop: platforms.Laptop, python: str, folder: Path) -> list[Path]:
    """Download that laptop's wheels into `folder` (kept when already there), then resolve them
    there with no index, as `make labs BUNDLE=...` will: the files pip would install.
    RuntimeError, with pip's last line, when either step fails."""
    wanted = [*requirements(laptop.sys_platform, laptop.machine, python), *build_requirements()]
    on_target = platform_args(laptop, python)
    _pip("download", "--dest", str(folder), *on_target, *wanted)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        _pip("install", "--dry-run", "--no-index", "--find-links", str(folder),
             "--target", str(Path(tmp) / "target"), "--report", str(report), *on_target, *wanted)
        chosen = json.loads(report.read_text())["install"]
    return [Path(unquote(urlparse(c["download_info"]["url"]).path)) for c in chosen]
