"""The cluster-services roles' templates rendered for a 1-node and a 3-control-plane inventory.

etcd, haproxy, keepalived and the NFS export bind, advertise and allow only private addresses;
the etcd client files are where the control_plane role tells kubeadm to look.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from _render_services import HA, NAT_ADDRESS, SINGLE, Cluster, env_file, render, text

from labctl import versions

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=[SINGLE, HA], ids=lambda c: c.name)
def rendered(request: pytest.FixtureRequest) -> tuple[Cluster, Path]:
    cluster: Cluster = request.param
    return cluster, render(cluster)


def defaults(role: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())


def test_no_rendered_file_holds_the_nat_address(rendered: tuple[Cluster, Path]) -> None:
    _, out = rendered
    for path in out.rglob("*"):
        if path.is_file():
            assert NAT_ADDRESS not in path.read_text(), path


def test_etcd_members_listen_on_private_address_with_client_certs(
    rendered: tuple[Cluster, Path],
) -> None:
    cluster, out = rendered
    for name, ip in cluster.control_plane.items():
        env = env_file(out, name, "etcd__etcd.env")
        assert env["ETCD_LISTEN_CLIENT_URLS"] == f"https://{ip}:2379,https://127.0.0.1:2379"
        assert env["ETCD_ADVERTISE_CLIENT_URLS"] == f"https://{ip}:2379"
        assert env["ETCD_LISTEN_PEER_URLS"] == f"https://{ip}:2380"
        assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == f"https://{ip}:2380"
        assert env["ETCD_LISTEN_METRICS_URLS"] == "http://127.0.0.1:2381"
        assert env["ETCD_CLIENT_CERT_AUTH"] == "true"
        assert env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
        for key in ("ETCD_CERT_FILE", "ETCD_PEER_CERT_FILE", "ETCD_TRUSTED_CA_FILE"):
            assert env[key].startswith("/etc/etcd/pki/"), key
        # kubeadm reset empties /var/lib/etcd and /etc/kubernetes/pki: etcd keeps out of both.
        assert not env["ETCD_DATA_DIR"].startswith("/var/lib/etcd/")
        ctl = env_file(out, name, "etcd__etcdctl.env")
        assert ctl["ETCDCTL_ENDPOINTS"] == ",".join(
            f"https://{m}:2379" for m in cluster.control_plane.values()
        )


def test_etcd_founding_cluster_is_the_etcd_group(rendered: tuple[Cluster, Path]) -> None:
    cluster, out = rendered
    expected = ",".join(f"{n}=https://{ip}:2380" for n, ip in cluster.control_plane.items())
    for name in cluster.control_plane:
        env = env_file(out, name, "etcd__initial-cluster-new.env")
        assert env["ETCD_INITIAL_CLUSTER"] == expected
        assert env["ETCD_INITIAL_CLUSTER_STATE"] == "new"


def test_rebuilt_member_joins_the_running_cluster(rendered: tuple[Cluster, Path]) -> None:
    cluster, out = rendered
    first, first_ip = next(iter(cluster.control_plane.items()))
    last, last_ip = list(cluster.control_plane.items())[-1]
    env = env_file(out, last, "etcd__initial-cluster-existing.env")
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
    peers = env["ETCD_INITIAL_CLUSTER"].split(",")
    assert peers[-1] == f"{last}=https://{last_ip}:2380"
    if last != first:
        assert peers[0] == f"{first}=https://{first_ip}:2380"


def test_etcd_client_files_are_one_cluster_wide_setting() -> None:
    """Where kube-apiserver's etcd client files live is written once per inventory
    (group_vars/all), never as a role default: the etcd role writes the files there, the
    control_plane role points kubeadm there (test_templates checks the rendered config)."""
    names = {f"etcd_external_{part}_file" for part in ("ca", "cert", "key")}
    for inventory in ("sample", "vagrant"):
        path = REPO / "inventory" / inventory / "group_vars/all/etcd.yml"
        assert names <= set(yaml.safe_load(path.read_text())), inventory
    etcd, cp = defaults("etcd"), defaults("control_plane")
    assert not names & (set(etcd) | set(cp))
    assert etcd["etcd_client_port"] == cp["control_plane_etcd_client_port"]


def test_etcd_unit_runs_as_etcd_and_restarts(rendered: tuple[Cluster, Path]) -> None:
    cluster, out = rendered
    unit = text(out, next(iter(cluster.control_plane)), "etcd__etcd.service")
    assert "Type=notify" in unit and "User=etcd" in unit and "Restart=on-failure" in unit
    assert "EnvironmentFile=-/etc/etcd/initial-cluster.env" in unit
    assert re.search(r"^ExecStart=/usr/local/bin/etcd$", unit, re.M)


def test_etcd_release_is_pinned_with_checksum() -> None:
    etcd, pins = defaults("etcd"), versions.pins()
    assert re.fullmatch(r"3\.6\.\d+", pins["etcd_version"])
    assert set(pins["etcd_release_sha256"]) == {"amd64", "arm64"}
    for checksum in pins["etcd_release_sha256"].values():
        assert re.fullmatch(r"[0-9a-f]{64}", checksum)
    assert "{{ _etcd_arch }}" in etcd["etcd_release_url"].replace("\n", " ")
    assert "{{ etcd_version }}" in etcd["etcd_release_url"].replace("\n", " ")


def test_haproxy_balances_every_api_server_behind_the_vip(rendered: tuple[Cluster, Path]) -> None:
    cluster, out = rendered
    if not cluster.vip:
        pytest.skip("one control-plane node: no VIP (the role only says so)")
    for name in cluster.control_plane:
        cfg = text(out, name, "loadbalancer__haproxy.cfg")
        assert f"bind {cluster.vip}:8443\n" in cfg
        servers = re.findall(r"^\s+server (\S+) (\S+) check", cfg, re.M)
        assert servers == [(n, f"{ip}:6443") for n, ip in cluster.control_plane.items()]
        assert "http-check connect ssl" in cfg and "uri /readyz" in cfg
        assert "mode tcp" in cfg


def test_keepalived_priorities_peers_and_vip(rendered: tuple[Cluster, Path]) -> None:
    cluster, out = rendered
    if not cluster.vip:
        pytest.skip("one control-plane node: no VIP")
    priorities = []
    for name, ip in cluster.control_plane.items():
        conf = text(out, name, "loadbalancer__keepalived.conf")
        priorities.append(int(re.search(r"priority (\d+)", conf).group(1)))
        peers = re.search(r"unicast_peer \{([^}]*)\}", conf).group(1).split()
        assert peers == [p for p in cluster.control_plane.values() if p != ip]
        assert f"unicast_src_ip {ip}\n" in conf
        assert f"{cluster.vip}/32 dev eth1" in conf
        assert "chk_haproxy" in conf and "auth_pass Rend3red" in conf
        weight = int(re.search(r"weight -(\d+)", conf).group(1))
        # Losing haproxy must drop the holder below every other node.
        assert priorities[0] - weight < min(
            [150 - 10 * i for i in range(1, len(cluster.control_plane))]
        )
    assert priorities == sorted(priorities, reverse=True) and len(set(priorities)) == len(
        priorities
    )


def test_vrrp_password_is_not_in_the_repo() -> None:
    assert defaults("loadbalancer")["loadbalancer_vrrp_password"] == ""


def test_nfs_export_only_to_the_private_network(rendered: tuple[Cluster, Path]) -> None:
    cluster, out = rendered
    server = next(iter(cluster.control_plane))
    lines = [
        line
        for line in text(out, server, "nfs_server__kubernetes.exports").splitlines()
        if line and not line.startswith("#")
    ]
    assert lines == [
        f"/srv/nfs/k8s {cluster.private_cidr}"
        "(rw,sync,no_subtree_check,all_squash,anonuid=65534,anongid=65534)"
    ]
