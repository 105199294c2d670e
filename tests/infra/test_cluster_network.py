"""cluster: traffic between every pair of nodes, through Services and DNS, from pods and hosts.

One busybox HTTP server per node (a DaemonSet that tolerates every taint), each answering its
node's name. From the pod on every node: every pod (by IP, so across the VXLAN or BGP path), a
ClusterIP Service and `kubernetes:443` (kube-proxy on that node), and a name lookup through every
CoreDNS pod. From every host: every pod. kubectl exec and logs reach the pod on every node.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

import _verdicts as verdict
import pytest
from _infra import (
    KUBECTL,
    SETTLE_S,
    host_named,
    items,
    kubectl,
    kubectl_apply,
    kubectl_json,
    role_vars,
    until_no_problems,
)
from _probes import HOST_PROBE, NAME, PROBE, host_targets, pod_calls, server_objects
from conftest import needs


@dataclass(frozen=True)
class Servers:
    namespace: str
    on: dict[str, dict[str, str]]  # node -> {"pod": name, "ip": pod IP}
    service_ip: str  # their ClusterIP Service


@pytest.fixture(scope="module")
def servers(request: pytest.FixtureRequest, first_cp: Any, cluster_ips: dict[str, str]) -> Servers:
    """The HTTP server on every node (the run's namespace is made only when the stages ran)."""
    needs(request, "control_plane", "node", "cni")
    scratch_namespace = request.getfixturevalue("scratch_namespace")
    image = role_vars(first_cp, "nfs_provisioner")["nfs_provisioner_smoke_image"]
    kubectl_apply(first_cp, server_objects(scratch_namespace, image))
    found: dict[str, dict[str, str]] = {}

    def missing() -> list[str]:
        pods = kubectl_json(
            first_cp, f"-n {scratch_namespace} get pods -l app.kubernetes.io/name={NAME}"
        )
        found.clear()
        for pod in pods["items"]:
            statuses = pod["status"].get("containerStatuses", [])
            if statuses and all(s["ready"] for s in statuses) and pod["status"].get("podIP"):
                found[pod["spec"]["nodeName"]] = {
                    "pod": pod["metadata"]["name"],
                    "ip": pod["status"]["podIP"],
                }
        return [f"no ready server pod on {node}" for node in sorted(set(cluster_ips) - set(found))]

    until_no_problems(missing, SETTLE_S, "the per-node HTTP servers")
    get_ip = f"-n {scratch_namespace} get service {NAME} -o jsonpath='{{.spec.clusterIP}}'"
    return Servers(scratch_namespace, found, kubectl(first_cp, get_ip))


def exec_in(host: Any, namespace: str, pod: str, script: str) -> tuple[int, str]:
    with host.sudo():
        out = host.run(f"{KUBECTL} -n {namespace} exec {pod} -- sh -c {shlex.quote(script)}")
    return out.rc, out.stdout if out.rc == 0 else out.stderr


def test_server_pods_get_addresses_in_the_pod_network(first_cp: Any, servers: Servers) -> None:
    subnet = role_vars(first_cp, "cni")["kube_pod_subnet"]
    assert verdict.in_network([s["ip"] for s in servers.on.values()], subnet) == []


def test_every_pod_reaches_every_pod_service_and_the_api(first_cp: Any, servers: Servers) -> None:
    api_ip = kubectl(first_cp, "-n default get service kubernetes -o jsonpath='{.spec.clusterIP}'")
    calls = pod_calls(servers.on, servers.service_ip, f"{api_ip}:443")
    expected = {
        src: {f"pod@{dst}": dst for dst in servers.on} | {"service": None, "kubernetes:443": None}
        for src in servers.on
    }
    results = {}
    for src, server in servers.on.items():
        rc, out = exec_in(first_cp, servers.namespace, server["pod"], PROBE + calls)
        results[src] = out if rc == 0 else f"exec {rc} {out.strip()}"
    problems = verdict.probes(results, expected)
    assert not problems, "\n".join(problems)


def test_every_host_reaches_every_pod(request: pytest.FixtureRequest, servers: Servers) -> None:
    targets = host_targets(servers.on)
    results = {src: host_named(request, src).run(HOST_PROBE + targets).stdout for src in servers.on}
    expected = {src: {f"pod@{dst}": dst for dst in servers.on} for src in servers.on}
    problems = verdict.probes(results, expected)
    assert not problems, "\n".join(problems)


def test_every_pod_resolves_names_through_every_coredns(first_cp: Any, servers: Servers) -> None:
    domain = role_vars(first_cp, "control_plane")["control_plane_dns_domain"]
    coredns = items(first_cp, "-n kube-system get pods -l k8s-app=kube-dns")
    resolvers = {p["metadata"]["name"]: p["status"].get("podIP") for p in coredns}
    resolvers["cluster DNS Service"] = ""  # the pod's own resolv.conf: kube-proxy's way
    name = f"{NAME}.{servers.namespace}.svc.{domain}"
    problems = []
    for src, server in servers.on.items():
        for resolver, ip in resolvers.items():
            rc, out = exec_in(first_cp, servers.namespace, server["pod"], f"nslookup {name} {ip}")
            if rc != 0 or not verdict.dns_answer(out, servers.service_ip):
                problems.append(f"{src} via {resolver}: {out.strip().splitlines()[-1:]}")
    assert not problems, "\n".join(problems)


def test_kubectl_logs_reach_every_node(first_cp: Any, servers: Servers) -> None:
    problems = []
    for node, server in servers.on.items():
        with first_cp.sudo():
            out = first_cp.run(f"{KUBECTL} -n {servers.namespace} logs {server['pod']}")
        if f"serving on {node}" not in out.stdout:
            problems.append(f"{node}: {out.stderr.strip() or out.stdout.strip()}")
    assert not problems, "\n".join(problems)
