"""versions.yml is the one place a version is pinned: a pin written anywhere else fails here.

The exceptions, each with its reason, are ALLOWED below. Lab READMEs may name the TensorFlow
image an attendee sees, but only at the pinned version."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from labctl import versions

REPO = Path(__file__).resolve().parents[2]
ALLOWED = {
    "versions.yml": "the pins themselves",
    "roles/versions/defaults/main.yml": "a link to versions.yml: the roles' defaults",
    "roles/UPSTREAM.md": "the review record of each pin (tests/ansible/test_roles.py ties them)",
    "labctl/k8s/UPSTREAM.md": "the review record of labctl's Kubernetes side",
    "pyproject.toml": "pip cannot read YAML (tests/unit/test_platforms.py ties its TensorFlow)",
}
GENERATED = re.compile(r"labs/[^/]+/k8s/")  # `python -m labctl.k8s.static`, checked up to date
IMAGE_TAG = re.compile(r"tensorflow/(?:tensorflow|serving):([\w.-]+)")


def tracked_text_files() -> dict[str, str]:
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    files = {}
    for name in names:
        path = REPO / name
        if path.is_file() and not path.is_symlink():
            try:
                files[name] = path.read_text()
            except UnicodeDecodeError:
                continue
    return files


def pinned_values() -> dict[str, str]:
    """value -> pin name; also a v-prefixed release without its v (v1.2.3 -> 1.2.3)."""
    values = {}
    for name, value in versions.flat():
        if not value or value.startswith("local/"):  # docker's box is built here, not pinned
            continue
        values[value] = name
        if re.fullmatch(r"v\d+(\.\d+)+", value):
            values[value[1:]] = name
    return values


def find_pins(text: str, values: dict[str, str]) -> list[str]:
    found = []
    for value, name in values.items():
        for match in re.finditer(rf"(?<![\w.]){re.escape(value)}(?![\w]|\.\d)", text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{line}: {name} ({value})")
    return found


def is_lab_readme(name: str) -> bool:
    return bool(re.fullmatch(r"labs/[^/]+/README\.md", name))


def test_the_scan_finds_a_pin() -> None:
    values = pinned_values()
    kube = versions.get("kube_version")
    assert find_pins(f"image: x\nkube: {kube}\n", values) == [f"2: kube_version ({kube})"]
    assert find_pins(f"kube: {kube}.1 or 9{kube}", values) == []  # other numbers are not pins


def test_no_pin_is_written_outside_versions_yml() -> None:
    values = pinned_values()
    tf = versions.get("tensorflow_version")
    offenders = {}
    for name, text in tracked_text_files().items():
        if name in ALLOWED or GENERATED.match(name):
            continue
        if is_lab_readme(name):  # the image tag an attendee sees, checked below
            text = IMAGE_TAG.sub("tensorflow/image:TAG", text)
        found = find_pins(text, values)
        if found:
            offenders[name] = found
    assert not offenders, (f"pins written outside versions.yml (read them from there; tensorflow "
                           f"{tf}): {offenders}")


def test_lab_readmes_name_the_pinned_tensorflow_image() -> None:
    tf = versions.get("tensorflow_version")
    stale = {name: tags for name, text in tracked_text_files().items()
             if is_lab_readme(name)
             and (tags := [t for t in IMAGE_TAG.findall(text) if t not in (tf, f"{tf}-gpu")])}
    assert not stale, f"lab READMEs name TensorFlow images at another version than {tf}: {stale}"


def test_every_pin_is_read_somewhere() -> None:
    """A pin nobody reads is a pin that silently stopped mattering."""
    files = tracked_text_files()
    readers = "\n".join(text for name, text in files.items() if name not in ALLOWED)
    unread = [name for name in versions.pins() if name not in readers]
    assert unread == []


@pytest.mark.parametrize("name", ["kube_version", "tensorflow_version"])
def test_a_missing_pin_is_one_line_naming_the_fix(name: str, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    (tmp_path / "versions.yml").write_text("other: 1\n")
    monkeypatch.setattr(versions, "FILE", tmp_path / "versions.yml")
    versions.pins.cache_clear()
    try:
        with pytest.raises(versions.UsageError, match=f"has no {name} .*`git checkout"):
            versions.get(name)
    finally:
        versions.pins.cache_clear()
