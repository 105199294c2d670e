"""etcd: a TLS cluster that refuses clients without a certificate and survives a lost member."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from _infra import (
    group_hosts,
    host_named,
    require_disruptive,
    role_vars,
    skip_by_design,
    vars_of,
    wait_for,
)

testinfra_hosts = ["ansible://etcd"]


def _vars(host: Any) -> dict[str, Any]:
    return role_vars(host, "etcd")


@pytest.fixture(autouse=True)
def _external_etcd(request: pytest.FixtureRequest) -> None:
    members = group_hosts(request, "etcd")
    if members and not vars_of(request, members[0]).get("etcd_external", True):
        skip_by_design("etcd_external is false: kubeadm's stacked etcd, no etcd role to check")


def _url(v: dict[str, Any]) -> str:
    return f"https://{v['k8s_node_ip']}:{v['etcd_client_port']}"


def etcdctl(host: Any, *args: str, endpoints: str | None = None, cert: bool = True) -> Any:
    """Run etcdctl on `host` against its own member (or `endpoints`), with the admin cert."""
    v = _vars(host)
    pki = v["etcd_pki_dir"]
    tls = f"--cacert={pki}/ca.crt"
    if cert:
        tls += f" --cert={pki}/admin.crt --key={pki}/admin.key"
    cmd = f"etcdctl --dial-timeout=3s --command-timeout=8s {tls} "
    cmd += f"--endpoints={endpoints or _url(v)} " + " ".join(args)
    return host.run(cmd)


def test_service_running_and_enabled(host: Any) -> None:
    svc = host.service("etcd")
    assert svc.is_running
    assert svc.is_enabled


def test_listens_on_private_address_with_cert_auth(host: Any) -> None:
    v = _vars(host)
    env = host.file(f"{v['etcd_conf_dir']}/etcd.env").content_string
    assert "ETCD_CLIENT_CERT_AUTH=true" in env
    assert "ETCD_PEER_CLIENT_CERT_AUTH=true" in env
    assert f"ETCD_ADVERTISE_CLIENT_URLS={_url(v)}" in env
    assert f"ETCD_LISTEN_PEER_URLS=https://{v['k8s_node_ip']}:{v['etcd_peer_port']}" in env
    assert "0.0.0.0" not in env
    assert host.socket(f"tcp://{v['k8s_node_ip']}:{v['etcd_client_port']}").is_listening
    assert host.socket(f"tcp://{v['k8s_node_ip']}:{v['etcd_peer_port']}").is_listening


@pytest.mark.parametrize(
    ("name", "owner"),
    [("ca.key", "root"), ("server.key", "etcd"), ("peer.key", "etcd"), ("admin.key", "root")],
)
def test_private_keys_are_private(host: Any, name: str, owner: str) -> None:
    key = host.file(f"{_vars(host)['etcd_pki_dir']}/{name}")
    assert key.exists
    assert key.mode == 0o600
    assert key.user == owner


def test_whole_cluster_healthy_with_client_cert(host: Any) -> None:
    v = _vars(host)
    out = etcdctl(host, "endpoint health --cluster --write-out=json")
    assert out.rc == 0, out.stderr
    health = json.loads(out.stdout)
    assert len(health) == len(v["groups"]["etcd"])
    assert all(member["health"] for member in health)


def test_members_are_the_etcd_group(host: Any, request: pytest.FixtureRequest) -> None:
    v = _vars(host)
    out = etcdctl(host, "member list --write-out=json")
    assert out.rc == 0, out.stderr
    members = json.loads(out.stdout)["members"]
    peers = sorted(url for m in members for url in m["peerURLs"])
    expected = sorted(
        f"https://{vars_of(request, name)['k8s_node_ip']}:{v['etcd_peer_port']}"
        for name in group_hosts(request, "etcd")
    )
    assert peers == expected
    assert all(m.get("name") for m in members), "a member was added but never started"


def test_client_without_certificate_is_refused(host: Any) -> None:
    out = etcdctl(host, "put /svc-test/anonymous nope", cert=False)
    assert out.rc != 0
    assert "certificate" in out.stderr.lower() or "deadline" in out.stderr.lower(), out.stderr


def test_plain_http_is_refused(host: Any) -> None:
    v = _vars(host)
    probe = host.run(
        "python3 -c 'import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=3)' "
        f"http://{v['k8s_node_ip']}:{v['etcd_client_port']}/version"
    )
    assert probe.rc != 0


def test_apiserver_client_cert_is_accepted(host: Any) -> None:
    v = _vars(host)
    if host.backend.host not in v["groups"].get("kube_control_plane", []):
        skip_by_design(f"{host.backend.host} is not a control-plane node")
    key = host.file(v["etcd_external_key_file"])
    assert key.mode == 0o600
    out = host.run(
        f"etcdctl --cacert={v['etcd_external_ca_file']} "
        f"--cert={v['etcd_external_cert_file']} --key={v['etcd_external_key_file']} "
        f"--endpoints={_url(v)} endpoint health"
    )
    assert out.rc == 0, out.stderr


def test_key_written_here_is_read_on_another_member(
    host: Any, request: pytest.FixtureRequest
) -> None:
    members = group_hosts(request, "etcd")
    if len(members) < 2:
        skip_by_design("a single member has no other member to read from")
    other_name = members[(members.index(host.backend.host) + 1) % len(members)]
    other = host_named(request, other_name)
    key, value = f"/svc-test/replication/{host.backend.host}", uuid.uuid4().hex
    assert etcdctl(host, "put", key, value).rc == 0
    try:
        got = etcdctl(other, "get --print-value-only", key)
    finally:
        etcdctl(host, "del", key)  # make verify leaves no key behind
    assert got.rc == 0, got.stderr
    assert got.stdout.strip() == value


def test_quorum_survives_a_stopped_member(request: pytest.FixtureRequest) -> None:
    """Stop the last member: the others keep serving writes; started again, it catches up."""
    require_disruptive()
    names = group_hosts(request, "etcd")
    if len(names) < 3:
        skip_by_design("quorum with a stopped member needs at least three members")
    survivor, victim = host_named(request, names[0]), host_named(request, names[-1])
    value = uuid.uuid4().hex
    victim.run("systemctl stop etcd")
    try:
        assert not victim.service("etcd").is_running
        health = etcdctl(survivor, "endpoint health --cluster")
        assert health.rc != 0, "a stopped member must show as unhealthy"
        put = etcdctl(survivor, "put /svc-test/during-outage", value)
        assert put.rc == 0, f"the cluster lost quorum with one member down: {put.stderr}"
    finally:
        victim.run("systemctl start etcd")
    wait_for(lambda: etcdctl(victim, "endpoint health").rc == 0, 60, "the member to rejoin")
    got = etcdctl(victim, "get --print-value-only /svc-test/during-outage")
    etcdctl(survivor, "del /svc-test/during-outage")
    assert got.stdout.strip() == value, "the restarted member did not catch up"
    assert etcdctl(survivor, "endpoint health --cluster").rc == 0
