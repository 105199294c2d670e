"""yamllint, ansible-lint (production profile) and actionlint over the whole repository, with the
settings in .yamllint and .ansible-lint: roles, playbooks, inventories, Molecule scenarios,
manifests, workflows."""

from __future__ import annotations

import pytest
from _venv import run

# ansible-lint loads every role, playbook and collection it meets: tens of seconds.
pytestmark = pytest.mark.slow


def test_yamllint_whole_repository() -> None:
    done = run("yamllint", "--format", "parsable", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ansible_lint_production_profile() -> None:
    done = run("ansible-lint", "--nocolor", timeout=900)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr


def test_actionlint_every_workflow() -> None:
    """The hosted-runner workflows (not run here: their runners are macOS and arm64)."""
    done = run("actionlint", "-no-color")
    assert done.returncode == 0, done.stdout + done.stderr
