"""The static kustomize dirs (`kubectl apply -k labs/NN-.../k8s/`) are `labctl render` output,
generated, not a second source of truth: they must equal a fresh render, and kustomize must
build exactly those objects from them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from _manifests import load

from labctl import versions
from labctl.k8s import static

REPO = Path(__file__).resolve().parents[2]


def key(doc: dict) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def test_static_dirs_are_up_to_date() -> None:
    stale = static.sync(check=True)
    assert stale == [], f"stale: {stale}; run `python -m labctl.k8s.static`"


@pytest.mark.parametrize("entry", static.DIRS, ids=lambda d: d.path)
def test_static_files_validate_strictly(entry: static.StaticDir) -> None:
    folder = REPO / "labs" / entry.path
    for file in sorted(folder.glob("*.yaml")):
        if file.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(file.read_text()):
            kubernetes_validate.validate(doc, versions.get("kube_version"), strict=True)


@pytest.mark.parametrize("entry", static.DIRS, ids=lambda d: d.path)
def test_kustomize_builds_exactly_the_render(entry: static.StaticDir) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("SKIPPED LOUDLY: kubectl (with kustomize) is not installed")
    built = subprocess.run(["kubectl", "kustomize", str(REPO / "labs" / entry.path)],
                           capture_output=True, text=True, check=True).stdout
    docs = sorted(yaml.safe_load_all(built), key=key)
    assert docs == sorted(static.default_render(load(entry.lab)), key=key)
