"""yamllint, ansible-lint (production profile) and actionlint over the whole repository, with the
settings in .yamllint and .ansible-lint: roles, playbooks, inventories, Molecule scenarios,
manifests, workflows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
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


def test_workflows_call_only_make_targets_that_exist() -> None:
    """Every `make <target>` a workflow step runs is a target of the Makefile, and every script
    it runs exists: actionlint cannot see either."""
    repo = Path(__file__).resolve().parents[2]
    targets = set(re.findall(r"^([a-z][a-z-]*):", (repo / "Makefile").read_text(), re.MULTILINE))
    called, scripts = set(), set()
    for workflow in (repo / ".github" / "workflows").glob("*.yml"):
        for job in yaml.safe_load(workflow.read_text())["jobs"].values():
            for step in job["steps"]:
                command = step.get("run", "")
                called |= set(re.findall(r"\bmake ([a-z][a-z-]*)", command))
                scripts |= set(re.findall(r"(?:^|\s)(\.ci/\S+|tests/\S+\.sh)", command))
    assert called >= {"rehearse", "labs"}, called
    assert called <= targets, called - targets
    assert all((repo / script).is_file() for script in scripts), scripts
