"""nfs_server: the export the provisioner's volumes live on, open to the cluster network only."""

from __future__ import annotations

from typing import Any

import pytest
from _infra import role_vars

testinfra_hosts = ["ansible://nfs_server"]


def _vars(host: Any) -> dict[str, Any]:
    v = role_vars(host, "nfs_server")
    v.setdefault("nfs_server_allowed_cidr", v["k8s_private_cidr"])
    return v


def _require_nfsd(host: Any) -> None:
    """The kernel NFS server runs only where /proc/fs/nfsd can be mounted."""
    if host.run("systemd-detect-virt --container").rc == 0:
        pytest.skip(
            "LEFT TO A REAL MACHINE: this is a container, whose kernel NFS server cannot start "
            "(no nfsd mount without CAP_SYS_ADMIN); on a VM this test checks nfs-server running, "
            "`exportfs -v` listing the export with its options and `showmount -e` offering it"
        )


def test_server_package_installed(host: Any) -> None:
    assert host.package("nfs-kernel-server").is_installed


def test_export_directory_belongs_to_the_squashed_user(host: Any) -> None:
    v = _vars(host)
    export = host.file(v["nfs_server_export_path"])
    assert export.is_directory
    assert export.uid == v["nfs_server_anonuid"]
    assert export.gid == v["nfs_server_anongid"]
    assert export.mode == 0o755


def test_exported_to_the_cluster_subnet_only(host: Any) -> None:
    v = _vars(host)
    lines = [
        line.split()
        for line in host.file(v["nfs_server_exports_file"]).content_string.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(lines) == 1, lines
    path, client = lines[0]
    assert path == v["nfs_server_export_path"]
    cidr, options = client.rstrip(")").split("(")
    assert cidr == v["nfs_server_allowed_cidr"]
    assert cidr not in ("*", "0.0.0.0/0")
    opts = options.split(",")
    for wanted in ("rw", "sync", "no_subtree_check", "all_squash"):
        assert wanted in opts
    assert f"anonuid={v['nfs_server_anonuid']}" in opts
    assert "no_root_squash" not in opts and "insecure" not in opts
    # Nothing else is exported through the main file.
    main = host.file("/etc/exports").content_string if host.file("/etc/exports").exists else ""
    assert not [line for line in main.splitlines() if line.strip() and not line.startswith("#")]


def test_server_unit_enabled(host: Any) -> None:
    unit = host.run("systemctl cat nfs-server.service")
    assert unit.rc == 0
    assert "proc-fs-nfsd.mount" in unit.stdout
    assert host.service("nfs-server").is_enabled


def test_server_running_and_exporting(host: Any) -> None:
    _require_nfsd(host)
    v = _vars(host)
    assert host.service("nfs-server").is_running
    exported = host.run("exportfs -v").stdout
    assert v["nfs_server_export_path"] in exported
    assert v["nfs_server_allowed_cidr"] in exported
    assert v["nfs_server_export_path"] in host.run("showmount -e localhost").stdout
