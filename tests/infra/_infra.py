"""Shared helpers for the cluster-services testinfra modules (etcd, loadbalancer, nfs, GPU).

These modules run as Molecule verifiers and, through `make verify`, against any inventory, so
everything they need comes from the inventory and the roles' documented defaults.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

from labctl import versions

ROLES = Path(__file__).resolve().parents[2] / "roles"
KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
# An HTTP(S) GET with the Python every Ansible host has (no curl assumed); TLS unverified, for
# health endpoints on their own node.
GET = (
    "python3 -c 'import ssl,sys,urllib.request as u;"
    "c=ssl._create_unverified_context();"
    "print(u.urlopen(sys.argv[1],context=c,timeout=3).read().decode().strip())' "
)
# Checks that wait (a pod starting, an image pulled, metrics' first scrape) give up after this.
SETTLE_S = 180


def role_vars(host: Any, role: str) -> dict[str, Any]:
    """The pins (versions.yml) and the role's literal defaults, overridden by the host's
    inventory variables: the precedence the role itself sees."""
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
    plain = {k: v for k, v in defaults.items() if not (isinstance(v, str) and "{{" in v)}
    return {**versions.pins(), **plain, **host.ansible.get_variables()}


def _inventory(request: pytest.FixtureRequest) -> str:
    return request.config.option.ansible_inventory


def host_named(request: pytest.FixtureRequest, name: str) -> Any:
    """Another inventory host, reached the way the current test reaches its own (with --sudo
    where the inventory's user is not root, as on Vagrant machines)."""
    return testinfra.get_host(
        f"ansible://{name}?ansible_inventory={_inventory(request)}",
        sudo=request.config.option.sudo,
    )


def group_hosts(request: pytest.FixtureRequest, group: str) -> list[str]:
    """The inventory's hosts in `group`, sorted by name (testinfra's order)."""
    return AnsibleRunner.get_runner(_inventory(request)).get_hosts(group)


def vars_of(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    """Inventory variables of another host."""
    return AnsibleRunner.get_runner(_inventory(request)).get_variables(name)


class ByDesign(pytest.skip.Exception):
    """A skip the full run accepts: the check does not apply to this host or topology."""

    __module__ = "builtins"  # reported as "ByDesign: <reason>", as pytest does for Skipped


def skip_by_design(reason: str) -> None:
    raise ByDesign(reason)


def require_disruptive() -> None:
    """Tests that stop services run only where that is allowed (Molecule sets it)."""
    if os.environ.get("INFRA_DISRUPTIVE") != "1":
        skip_by_design(
            "stops services on purpose; set INFRA_DISRUPTIVE=1 to run it on this cluster"
        )


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `check` until it holds; return the seconds it took, fail with `what` on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def until_no_problems(check: Callable[[], list[str]], timeout: float, what: str) -> None:
    """Retry a decision (a _verdicts function over fresh output) until it finds no problem, so
    that a transient API error after a reboot or a VIP move does not fail a healthy cluster;
    fail with its last problems after `timeout` seconds."""
    start = time.monotonic()
    while True:
        try:
            problems = check()
        except (AssertionError, ValueError) as error:  # kubectl's exit code, or half a JSON
            problems = [f"error: {str(error).strip().splitlines()[0] if str(error) else error!r}"]
        if not problems:
            return
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}, still after {timeout:.0f} s:\n  " + "\n  ".join(problems))
        time.sleep(2)


def kubectl(host: Any, args: str) -> str:
    with host.sudo():
        return str(host.check_output(f"{KUBECTL} {args}"))


def kubectl_json(host: Any, args: str) -> Any:
    return json.loads(kubectl(host, f"{args} -o json"))


def items(host: Any, args: str) -> list[dict[str, Any]]:
    """The objects of a `kubectl get` list."""
    return list(kubectl_json(host, args)["items"])


def wait_pod_ended(host: Any, namespace: str, pod: str) -> None:
    """Wait (SETTLE_S at most) until a run-to-completion pod has Succeeded or Failed."""

    def running() -> list[str]:
        get = f"-n {namespace} get pod {pod} -o jsonpath='{{.status.phase}}'"
        phase = kubectl(host, get)
        return [] if phase in ("Succeeded", "Failed") else [f"pod {pod} is {phase or 'Pending'}"]

    until_no_problems(running, SETTLE_S, f"pod {pod} to end")


def kubectl_apply(host: Any, objects: list[dict[str, Any]]) -> None:
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    with host.sudo():
        host.check_output(f"printf %s {shlex.quote(manifest)} | {KUBECTL} apply -f -")
