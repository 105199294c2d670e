"""Selection and shared fixtures for the testinfra suite (tests/infra).

Every module is named `test_<stage>.py` after the role (playbook stage) it checks. Which stages
run: `--stages a,b` if given; else, under Molecule, the scenario's name; else all of them (a full
cluster, `make verify`). Modules of other stages are skipped with the reason, never passed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

from labctl import versions


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stages",
        default="",
        help="comma-separated stages (roles) whose test_<stage>.py modules run; default: all, "
        "or the Molecule scenario's name under Molecule",
    )


def selected_stages(config: pytest.Config) -> set[str] | None:
    """The stages to run, or None for all of them."""
    option = str(config.getoption("--stages") or "")
    if option:
        return {s.strip() for s in option.split(",") if s.strip()}
    scenario = os.environ.get("MOLECULE_SCENARIO_NAME")
    return {scenario} if scenario else None


def module_stage(path: Path) -> str:
    return path.stem.removeprefix("test_")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    stages = selected_stages(config)
    if stages is None:
        return
    for item in items:
        stage = module_stage(item.path)
        if stage not in stages:
            reason = f"stage {stage!r} not selected (stages: {', '.join(sorted(stages))})"
            item.add_marker(pytest.mark.skip(reason=reason))


def inventory_runner(host: Any) -> AnsibleRunner:
    """The Ansible inventory the host comes from (the suite always runs over `ansible://`)."""
    runner = getattr(host.backend, "ansible_runner", None)
    if runner is None:
        pytest.fail(
            "tests/infra runs over Ansible: pass --connection=ansible --ansible-inventory=… "
            "(not --hosts, which would override each module's testinfra_hosts)"
        )
    return runner


@pytest.fixture
def host_vars(host: Any) -> dict[str, Any]:
    """The current host's inventory variables (host and group vars, group_names, groups) over
    the pins of versions.yml, which the roles read as defaults."""
    return {**versions.pins(), **host.ansible.get_variables()}


@pytest.fixture
def node_ips(host: Any) -> dict[str, str]:
    """k8s_node_ip of every inventory host that has one, by inventory name."""
    runner = inventory_runner(host)
    found = {}
    for name in runner.get_hosts("all"):
        ip = runner.get_variables(name).get("k8s_node_ip")
        if ip:
            found[name] = str(ip)
    return found


@pytest.fixture
def in_container(host: Any) -> bool:
    """True inside a container, where the kernel, swap and clock belong to the host."""
    return host.run("systemd-detect-virt --container").rc == 0


def require_group(host_vars: dict[str, Any], group: str) -> None:
    """Skip, naming the host and group, when the host is not in the group a check is about."""
    if group not in host_vars.get("group_names", []):
        pytest.skip(f"{host_vars['inventory_hostname']} is not in group {group}")
