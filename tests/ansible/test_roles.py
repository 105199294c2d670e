"""The core roles follow roles/README.md's conventions: the standard files, role-prefixed
variables, every default documented in defaults/main.yml and in meta/argument_specs.yml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from labctl import versions

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"
CORE_ROLES = ["common", "containerd", "kubernetes", "control_plane", "node", "cni"]
FILES = ["defaults/main.yml", "tasks/main.yml", "handlers/main.yml", "meta/main.yml"]
FILES.append("meta/argument_specs.yml")
# Roles outside the core stages, held to the same variable conventions.
CONVENTION_ROLES = [*CORE_ROLES, "lab_images"]


def load(role: str, part: str) -> dict:
    path = ROLES_DIR / role / part
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


@pytest.mark.parametrize("role", CORE_ROLES)
def test_standard_files(role: str) -> None:
    missing = [f for f in FILES if not (ROLES_DIR / role / f).is_file()]
    assert not missing, f"{role} lacks {missing}"


@pytest.mark.parametrize("role", CONVENTION_ROLES)
def test_variables_carry_the_role_prefix(role: str) -> None:
    names = [*load(role, "defaults/main.yml"), *load(role, "vars/main.yml")]
    assert [n for n in names if not n.startswith(f"{role}_")] == []


@pytest.mark.parametrize("role", CONVENTION_ROLES)
def test_every_default_is_in_the_argument_spec(role: str) -> None:
    specs = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(set(load(role, "defaults/main.yml")) - set(specs)) == []


@pytest.mark.parametrize("role", CONVENTION_ROLES)
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


def test_upstream_md_names_every_pinned_version() -> None:
    """A bump of versions.yml that does not touch roles/UPSTREAM.md (where its rows are
    re-checked) fails here."""
    pins = (ROLES_DIR / "UPSTREAM.md").read_text().split("## Pins", 1)[1].split("\n## ", 1)[0]
    missing = [f"{name} ({value})" for name, value in versions.flat()
               if value and not value.startswith("local/") and value not in pins]
    assert missing == [], f"roles/UPSTREAM.md's pins lack {missing}"
