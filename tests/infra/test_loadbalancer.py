"""loadbalancer: one VIP in front of every API server, moving when its holder fails."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from _infra import (
    GET,
    group_hosts,
    host_named,
    require_disruptive,
    role_vars,
    skip_by_design,
    vars_of,
    wait_for,
)
from conftest import selected_stages

testinfra_hosts = ["ansible://kube_control_plane"]

STATS = (
    "python3 -c 'import socket;s=socket.socket(socket.AF_UNIX);"
    's.connect("/run/haproxy/admin.sock");s.sendall(b"show stat\\n");'
    'print(b"".join(iter(lambda: s.recv(65536), b"")).decode())\''
)


def _vars(host: Any) -> dict[str, Any]:
    v = role_vars(host, "loadbalancer")
    if len(v["groups"].get(v["loadbalancer_group"], [])) < 2 or not v.get("kube_vip_address"):
        skip_by_design("one control-plane node or no kube_vip_address: no VIP, by design")
    return v


def _vip_url(v: dict[str, Any]) -> str:
    return (
        f"https://{v['kube_vip_address']}:{v['loadbalancer_port']}{v['loadbalancer_health_path']}"
    )


def _holders(hosts: list[Any], vip: str) -> list[Any]:
    return [h for h in hosts if f" {vip}/" in h.run("ip -o -4 addr show").stdout]


def _backends(host: Any) -> dict[str, str]:
    """haproxy's view: backend server name -> status (UP/DOWN)."""
    out = host.run(STATS)
    assert out.rc == 0, out.stderr
    rows = csv.reader(io.StringIO(out.stdout.lstrip("# ")))
    header = next(rows)
    col = {name: i for i, name in enumerate(header)}
    return {
        r[col["svname"]]: r[col["status"]]
        for r in rows
        if len(r) > col["status"]
        and r[col["pxname"]] == "kube-apiserver"
        and r[col["svname"]] not in ("FRONTEND", "BACKEND")
    }


def _require_api_servers(request: pytest.FixtureRequest, host: Any) -> None:
    """The backends are the API servers: before the control_plane stage (the docker provider's
    offline stages) none answers. Molecule's stand-ins and a full cluster always check."""
    stages = selected_stages(request.config)
    if stages is None or "control_plane" in stages or "UP" in _backends(host).values():
        return
    ran = ", ".join(sorted(stages))
    pytest.skip(f"no API server behind the VIP: stage control_plane not run (stages: {ran})")


def _cluster(request: pytest.FixtureRequest, v: dict[str, Any]) -> list[Any]:
    return [host_named(request, n) for n in group_hosts(request, v["loadbalancer_group"])]


def test_services_running_and_enabled(host: Any) -> None:
    _vars(host)
    for name in ("haproxy", "keepalived"):
        assert host.service(name).is_running, name
        assert host.service(name).is_enabled, name


def test_haproxy_backends_are_every_control_plane_node(
    host: Any, request: pytest.FixtureRequest
) -> None:
    v = _vars(host)
    cfg = host.file("/etc/haproxy/haproxy.cfg").content_string
    assert f"bind {v['kube_vip_address']}:{v['loadbalancer_port']}\n" in cfg
    servers = {line.split()[2] for line in cfg.splitlines() if line.strip().startswith("server ")}
    expected = {
        f"{vars_of(request, n)['k8s_node_ip']}:{v['kube_apiserver_port']}"
        for n in v["groups"][v["loadbalancer_group"]]
    }
    assert servers == expected
    assert host.run("haproxy -c -f /etc/haproxy/haproxy.cfg").rc == 0
    _require_api_servers(request, host)
    assert set(_backends(host).values()) == {"UP"}, _backends(host)


def test_keepalived_uses_private_interface_and_generated_password(host: Any) -> None:
    v = _vars(host)
    conf = host.file("/etc/keepalived/keepalived.conf")
    assert conf.mode == 0o600
    text = conf.content_string
    iface = host.run(f"ip -o -4 addr show | awk '$4 ~ /^{v['k8s_node_ip']}\\// {{print $2}}'")
    assert f"interface {iface.stdout.strip()}\n" in text
    password = next(line.split()[1] for line in text.splitlines() if "auth_pass" in line)
    assert 0 < len(password) <= 8


def test_exactly_one_node_holds_the_vip_and_it_answers(
    host: Any, request: pytest.FixtureRequest
) -> None:
    v = _vars(host)
    holders = _holders(_cluster(request, v), v["kube_vip_address"])
    assert len(holders) == 1, f"VIP held by {[h.backend.host for h in holders]}"
    _require_api_servers(request, host)
    answer = host.run(GET + _vip_url(v))
    assert answer.rc == 0, answer.stderr


def _failover(request: pytest.FixtureRequest, service: str) -> float:
    """Stop `service` on the VIP's holder; return the seconds until the VIP answers elsewhere."""
    require_disruptive()
    first = host_named(request, group_hosts(request, "kube_control_plane")[0])
    v = _vars(first)
    nodes = _cluster(request, v)
    vip = v["kube_vip_address"]
    wait_for(lambda: len(_holders(nodes, vip)) == 1, 20, "a single VIP holder")
    (holder,) = _holders(nodes, vip)
    observer = next(n for n in nodes if n.backend.host != holder.backend.host)
    url = _vip_url(v)
    holder.run(f"systemctl stop {service}")
    try:

        def moved() -> bool:
            now = [h.backend.host for h in _holders(nodes, vip)]
            return (
                len(now) == 1 and now != [holder.backend.host] and observer.run(GET + url).rc == 0
            )

        took = wait_for(moved, 30, f"the VIP to leave {holder.backend.host} ({service} stopped)")
    finally:
        holder.run(f"systemctl start {service}")
    wait_for(lambda: len(_holders(nodes, vip)) == 1, 20, "a single VIP holder after recovery")
    return took


def test_vip_moves_when_keepalived_stops(request: pytest.FixtureRequest) -> None:
    took = _failover(request, "keepalived")
    print(f"VIP answered from another node {took:.1f} s after keepalived stopped")
    assert took < 10


def test_vip_moves_when_haproxy_dies(request: pytest.FixtureRequest) -> None:
    took = _failover(request, "haproxy")
    print(f"VIP answered from another node {took:.1f} s after haproxy stopped")
    assert took < 10


def test_dead_api_server_is_taken_out(request: pytest.FixtureRequest) -> None:
    """A backend that stops answering is marked DOWN; the VIP keeps answering from the rest."""
    require_disruptive()
    first = host_named(request, group_hosts(request, "kube_control_plane")[0])
    v = _vars(first)
    nodes = _cluster(request, v)
    victim = nodes[-1]
    if not victim.service("kube-apiserver-standin").is_running:
        skip_by_design("needs Molecule's API server stand-in; on a cluster, move a static pod away")
    victim.run("systemctl stop kube-apiserver-standin")
    try:
        wait_for(
            lambda: _backends(first).get(victim.backend.host) == "DOWN",
            20,
            f"haproxy to mark {victim.backend.host} DOWN",
        )
        answers = [first.run(GET + _vip_url(v)) for _ in range(2 * len(nodes))]
        assert all(a.rc == 0 for a in answers), [a.stderr for a in answers if a.rc]
        assert victim.backend.host not in {a.stdout.strip() for a in answers}
    finally:
        victim.run("systemctl start kube-apiserver-standin")
    wait_for(lambda: _backends(first).get(victim.backend.host) == "UP", 20, "the backend back UP")
