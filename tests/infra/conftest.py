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
  - a Molecule stand-in's check on a real cluster;
  - a module whose hosts group the inventory declares empty (gpu_nodes without GPUs).
So a check that cannot run on a cluster that should allow it ("no NVIDIA device" on a gpu_nodes
host, "no admin kubeconfig") fails the full run instead of leaving it green.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from typing import Any

import pytest
from _infra import (
    SETTLE_S,
    ByDesign,
    group_hosts,
    host_named,
    kubectl,
    skip_by_design,
    vars_of,
)
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
    if not report.skipped or selected_stages(item.config) is not None:
        return report
    reason = str(call.excinfo.value) if call.excinfo else str(report.longrepr)
    by_design = (call.excinfo and isinstance(call.excinfo.value, ByDesign)) or (
        reason.startswith(EMPTY_HOSTS) and declared_but_empty(item)
    )
    if not by_design:
        report.outcome = "failed"
        report.longrepr = f"skipped in a full run, which allows only by-design skips: {reason}"
    return report


# pytest's reason when testinfra parametrizes a module over a group without hosts.
EMPTY_HOSTS = "got empty parameter set for (_testinfra_host)"


def declared_but_empty(item: pytest.Item) -> bool:
    """The module's testinfra_hosts groups all exist in the inventory (an empty gpu_nodes is
    how an inventory says "no GPUs"); a misspelt group is not by design."""
    groups = [h.removeprefix("ansible://") for h in getattr(item.module, "testinfra_hosts", [])]
    inventory = AnsibleRunner.get_runner(item.config.option.ansible_inventory).inventory
    declared = set(inventory) | {
        child for group in inventory.values() if isinstance(group, dict)
        for child in group.get("children", [])
    }  # fmt: skip
    return bool(groups) and all(group in declared for group in groups)


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


def needs(request: pytest.FixtureRequest, *roles: str) -> None:
    """Skip a whole-cluster check, naming them, unless every role it depends on was selected."""
    selected = selected_stages(request.config)
    if selected is None:
        return
    missing = sorted(set(roles) - selected)
    if missing:
        ran = ", ".join(sorted(selected))
        pytest.skip(f"needs stage(s) {', '.join(missing)}, not run here (stages: {ran})")


@pytest.fixture(scope="session")
def first_cp(request: pytest.FixtureRequest) -> Any:
    """The first control-plane node, from which the whole-cluster checks run kubectl."""
    names = group_hosts(request, "kube_control_plane")
    if not names:
        pytest.fail("the inventory has no host in kube_control_plane")
    return host_named(request, names[0])


@pytest.fixture(scope="session")
def cluster_ips(request: pytest.FixtureRequest) -> dict[str, str]:
    """k8s_node_ip of every k8s_cluster host (node names are inventory names)."""
    return {
        name: str(vars_of(request, name)["k8s_node_ip"])
        for name in group_hosts(request, "k8s_cluster")
    }


@pytest.fixture(scope="session")
def scratch_namespace(request: pytest.FixtureRequest, first_cp: Any) -> Iterator[str]:
    """A namespace of this run for every object the checks create, deleted at the end (with
    them), so that `make verify` can run again and again on the same cluster."""
    name = f"verify-{uuid.uuid4().hex[:8]}"
    kubectl(first_cp, f"create namespace {name}")
    kubectl(first_cp, f"label namespace {name} app.kubernetes.io/managed-by=make-verify")
    yield name
    kubectl(first_cp, f"delete namespace {name} --wait=true --timeout={SETTLE_S}s")
