"""Every role follows roles/README.md's conventions, one rule each:
- the standard files (handlers/main.yml when a task notifies one);
- settings in defaults/main.yml, named `<role>_*`, each documented by a comment and listed in
  meta/argument_specs.yml, which carries no defaults of its own (one place for each value);
- what a role derives (vars/main.yml, set_fact, register) is named `_<role>_*`, so it never
  looks like a setting;
- apt's cache lifetime is the role's `<role>_apt_cache_valid_time`, never a literal.
roles/versions (the pins of versions.yml, no tasks) is checked by tests/unit/test_versions.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from labctl import versions

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if p.is_dir() and p.name != "versions")
FILES = ["defaults/main.yml", "tasks/main.yml", "meta/main.yml", "meta/argument_specs.yml"]


def load(role: str, part: str) -> dict:
    path = ROLES_DIR / role / part
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def task_files(role: str) -> list[Path]:
    return sorted((ROLES_DIR / role).glob("tasks/*.yml")) + sorted(
        (ROLES_DIR / role).glob("handlers/*.yml"))


def test_every_role_is_checked() -> None:
    assert len(ROLES) >= 14 and "etcd" in ROLES and "lab_images" in ROLES


@pytest.mark.parametrize("role", ROLES)
def test_standard_files(role: str) -> None:
    notifies = any("notify:" in f.read_text() for f in task_files(role))
    wanted = [*FILES, "handlers/main.yml"] if notifies else FILES
    missing = [f for f in wanted if not (ROLES_DIR / role / f).is_file()]
    assert not missing, f"{role} lacks {missing}"


@pytest.mark.parametrize("role", ROLES)
def test_settings_carry_the_role_prefix(role: str) -> None:
    assert [n for n in load(role, "defaults/main.yml") if not n.startswith(f"{role}_")] == []


@pytest.mark.parametrize("role", ROLES)
def test_derived_variables_carry_the_private_prefix(role: str) -> None:
    derived = list(load(role, "vars/main.yml"))
    for path in task_files(role):
        text = path.read_text()
        derived += re.findall(r"^\s+register: (\w+)", text, flags=re.MULTILINE)
        for block in re.findall(r"ansible\.builtin\.set_fact:\n((?:[ ]{4,}\S.*\n)+)", text):
            indent = len(block) - len(block.lstrip(" "))  # the set_fact's keys
            derived += re.findall(rf"^[ ]{{{indent}}}(\w+):", block, flags=re.MULTILINE)
    assert derived, f"{role}: the scan found nothing"
    assert [n for n in derived if not n.startswith(f"_{role}_") and n != "cacheable"] == []


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_in_the_argument_spec_and_nowhere_else(role: str) -> None:
    specs = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(set(load(role, "defaults/main.yml")) - set(specs)) == []
    assert [name for name, spec in specs.items() if "default" in spec] == []


@pytest.mark.parametrize("role", ROLES)
def test_every_default_has_a_comment(role: str) -> None:
    """Each run of top-level keys (up to a blank line) starts below a comment."""
    undocumented, documented = [], False
    for line in (ROLES_DIR / role / "defaults/main.yml").read_text().splitlines():
        if not line.strip():
            documented = False
        elif line.startswith("#"):
            documented = True
        elif (match := re.match(r"^(\w+):", line)) and not documented:
            undocumented.append(match.group(1))
    assert undocumented == []


@pytest.mark.parametrize("role", ROLES)
def test_apt_cache_lifetime_is_the_role_s_setting(role: str) -> None:
    used = [value for path in task_files(role)
            for value in re.findall(r"cache_valid_time: (.+)", path.read_text())]
    wanted = f"{role}_apt_cache_valid_time"
    assert [v for v in used if wanted not in v] == []
    if used:
        assert wanted in load(role, "defaults/main.yml")


def test_upstream_md_names_every_pinned_version() -> None:
    """A bump of versions.yml that does not touch roles/UPSTREAM.md (where its rows are
    re-checked) fails here."""
    pins = (ROLES_DIR / "UPSTREAM.md").read_text().split("## Pins", 1)[1].split("\n## ", 1)[0]
    missing = [f"{name} ({value})" for name, value in versions.flat()
               if value and not value.startswith("local/") and value not in pins]
    assert missing == [], f"roles/UPSTREAM.md's pins lack {missing}"
