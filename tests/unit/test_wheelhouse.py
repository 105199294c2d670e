"""The venue bundle's wheels (labctl/wheelhouse.py) and `make labs BUNDLE=DIR`: this laptop's
wheels, fetched for real from the package index, resolve and build labctl with no index at all;
the Makefile hands pip only the bundle when pointed at it; a wrong BUNDLE stops in one line."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from _prereqs import missing

from labctl import bundle, platforms, versions, wheelhouse
from labctl.labs import REPO

# Proxies that refuse: any request pip makes to an index fails at once. No pip configuration
# file either: a machine's own (extra indexes, find-links) would be other places to look.
NO_NETWORK = {"PIP_CONFIG_FILE": os.devnull,
              "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
              "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
              "PIP_RETRIES": "0", "PIP_TIMEOUT": "2"}


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


def here() -> str:
    """This laptop's target name (the machine and Python running the tests)."""
    laptop = platforms.find(sys.platform, platform.machine())
    if laptop is None or not laptop.supported:
        pytest.skip(f"{sys.platform} {platform.machine()} is not a supported laptop")
    return wheelhouse.name(laptop, "{}.{}".format(*sys.version_info))


def test_the_plan_has_every_supported_laptop_and_python() -> None:
    wheels = {i.source for i in bundle.plan() if i.kind == "wheel"}
    assert wheels == {wheelhouse.name(laptop, python) for laptop in platforms.LAPTOPS
                      if laptop.supported for python in platforms.PYTHONS}
    assert "linux-x86_64-python3.11" in wheels and "darwin-arm64-python3.13" in wheels


def test_make_labs_asks_only_the_bundle_when_pointed_at_it(tmp_path: Path) -> None:
    venv, folder = tmp_path / "venv", tmp_path / "bundle"
    pointed = [line for line in make("-n", "venv", f"VENV={venv}", f"BUNDLE={folder}")
               .stdout.splitlines() if "pip install" in line]
    assert len(pointed) == 2 and all(
        f"--no-index --find-links {folder}/wheels" in line for line in pointed), pointed
    plain = make("-n", "venv", f"VENV={venv}").stdout
    assert "pip install" in plain and "--no-index" not in plain
    # `make bundle BUNDLE=DIR` writes the bundle there; its own venv comes from the index
    fetching = make("-n", "bundle", f"VENV={venv}", f"BUNDLE={folder}").stdout
    assert f"labctl.bundle fetch --out {folder}" in fetching and "--no-index" not in fetching


def test_a_bundle_without_wheels_stops_make_labs_in_one_line(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = make("venv", f"VENV={venv}", f"BUNDLE={tmp_path / 'nothing'}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[0] == (
        f"make: {tmp_path / 'nothing'}/wheels does not exist: BUNDLE=DIR names a folder that "
        "make bundle filled")
    assert not venv.exists()  # nothing half made


def test_a_failed_download_is_recorded_with_pips_reason(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in NO_NETWORK.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    manifest = bundle.fetch([bundle.Item("wheel", here())], tmp_path / "bundle")
    (entry,) = manifest["items"]
    assert not entry["fetched"] and entry["error"].startswith("pip download failed: ")
    assert manifest["size"] == 0


@pytest.mark.slow
def test_this_laptops_wheels_install_labctl_and_the_labs_with_no_index(tmp_path: Path) -> None:
    """Fetched for real (pip's cache holds most of it after `make`), then resolved by a fresh
    venv with no index and no network: labctl's editable build included, as `make labs
    BUNDLE=DIR` runs it."""
    out = tmp_path / "bundle"
    manifest = bundle.fetch([bundle.Item("wheel", here())], out)
    (entry,) = manifest["items"]
    if not entry["fetched"] and "pip download failed" in entry.get("error", ""):
        missing(f"the package index is not reachable: {entry['error']}")
    assert entry["fetched"], entry
    names = [Path(f["file"]).name for f in entry["files"]]
    tf = versions.get("tensorflow_version")
    python = "cp{}{}".format(*sys.version_info)
    assert any(n.startswith(("tensorflow-", "tensorflow_cpu-")) and f"-{tf}-{python}-" in n
               for n in names), names
    assert any(n.startswith("pip-") for n in names) and any(
        n.startswith("setuptools-") for n in names), names
    for f in entry["files"]:
        assert hashlib.sha256((out / f["file"]).read_bytes()).hexdigest() == f["sha256"]
    assert manifest["size"] == sum(f["size"] for f in entry["files"])

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--dry-run", "--disable-pip-version-check",
         "--no-index", "--find-links", str(out / wheelhouse.FOLDER), "-e", f"{REPO}[labs]"],
        capture_output=True, text=True, timeout=600, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **NO_NETWORK})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Would install" in done.stdout and "tensorflow" in done.stdout
