"""Selection, the full run's skip rule, and shared fixtures of the testinfra suite (tests/infra).

Which checks run: `--stages a,b` (`make verify STAGES=a,b`, Molecule's verifier options) names
roles or stages of playbooks/ (tests/infra/_stages.py); an unknown name is an error. Modules of
other stages are skipped with the reason. Without --stages every check runs (`make verify` on a
whole cluster), and then a skip is a failure unless it is one of the documented by-design ones,
raised through `skip_by_design`:
  - the host is not in the group the check is about;
  - the inventory's topology has no such thing: no host in gpu_nodes, kubeadm's stacked etcd,
    one control-plane node (no VIP), too few etcd members for the check;
  - a disruptive check without INFRA_DISRUPTIVE=1;
  - the no-GPU check on a host that has a GPU;
  - a Molecule stand-in's check on a real cluster.
So a check that cannot run on a cluster that should allow it ("no NVIDIA device" on a gpu_nodes
host, "no admin kubeconfig") fails the full run instead of leaving it green.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from _infra import ByDesign, skip_by_design
from _stages import module_stage, resolve
from testinfra.utils.ansible_runner import AnsibleRunner

from labctl import versions

SELECTED = pytest.StashKey[frozenset[str] | None]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stages",
        default="",
        help="comma-separated roles or stages of playbooks/ whose checks run (default: all, "
        "and any skip that is not by design fails)",
    )


def pytest_configure(config: pytest.Config) -> None:
    try:
        config.stash[SELECTED] = resolve(str(config.getoption("--stages") or ""))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


def selected_stages(config: pytest.Config) -> frozenset[str] | None:
    """The stages (roles, or `cluster`) to run, or None for all of them."""
    return config.stash[SELECTED]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    stages = selected_stages(config)
    if stages is None:
        return
    for item in items:
        stage = module_stage(item.path)
        if stage not in stages:
            reason = f"stage {stage!r} not selected (stages: {', '.join(sorted(stages))})"
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if (
        report.skipped
        and selected_stages(item.config) is None
        and not (call.excinfo and isinstance(call.excinfo.value, ByDesign))
    ):
        reason = str(call.excinfo.value) if call.excinfo else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in a full run, which allows only by-design skips: {reason}"
    return report


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
        skip_by_design(f"{host_vars['inventory_hostname']} is not in group {group}")
