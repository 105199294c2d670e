"""The Kubernetes packages from the venue bundle: `make bundle` copies a flat apt repository in
part (labctl/apt_mirror.py), and the kubernetes role installs from that copy when
kit_mirror_url is set, with apt checking it against the repository's own key.

The "upstream" is a stand-in of pkgs.k8s.io's repository, built here: empty packages named and
versioned as Kubernetes' (kubelet depending on kubernetes-cni, and shipping a unit), a newer
kubeadm than the pin, two cri-tools, an unrelated package, an arm64 kubectl, and InRelease
signed by a throw-away key published as Release.key. It is served on the host's loopback for
the copy only; the node cannot reach it, so the role's probe, key, repository and packages can
only come from the bundle, served inside the node."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _docker import docker
from _systemd_node import converge, role_play, systemd_node

from labctl import apt_mirror, bundle, versions

pytestmark = [pytest.mark.docker, pytest.mark.slow]
KUBE = versions.get("kube_version")
MAJOR, MINOR, PATCH = KUBE.split(".")
KUBELET_UNIT = """[Unit]
Description=stand-in kubelet
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
"""
# (name, version, architecture, Depends, files)
STAND_INS = [
    ("kubeadm", f"{KUBE}-1.1", "amd64", "", {}),
    ("kubeadm", f"{MAJOR}.{MINOR}.{int(PATCH) + 1}-1.1", "amd64", "", {}),  # newer than the pin
    ("kubelet", f"{KUBE}-1.1", "amd64", "kubernetes-cni (>= 1.2.0)",
     {"lib/systemd/system/kubelet.service": KUBELET_UNIT}),
    ("kubectl", f"{KUBE}-1.1", "amd64", "", {}),
    ("kubectl", f"{KUBE}-1.1", "arm64", "", {}),
    ("cri-tools", f"{MAJOR}.{int(MINOR) - 1}.0-1.1", "amd64", "", {}),
    ("cri-tools", f"{MAJOR}.{MINOR}.0-1.1", "amd64", "", {}),
    ("kubernetes-cni", "1.7.1-1.1", "amd64", "", {}),
    ("unrelated", "1.0-1", "amd64", "", {}),
]


def build_upstream(root: Path, gnupg: Path) -> Path:
    """The stand-in repository under ROOT/core:/stable:/vX.Y/deb/ (pkgs.k8s.io's path)."""
    repo = root / "core:" / "stable:" / f"v{MAJOR}.{MINOR}" / "deb"
    index = []
    for name, version, arch, depends, files in STAND_INS:
        tree = root / "trees" / f"{name}-{version}-{arch}"
        (tree / "DEBIAN").mkdir(parents=True)
        control = (f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
                   "Maintainer: stand-in <kit@example.invalid>\n"
                   + (f"Depends: {depends}\n" if depends else ""))
        (tree / "DEBIAN/control").write_text(control + "Description: stand-in\n")
        for path, text in files.items():
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            (tree / path).write_text(text)
        deb = repo / arch / f"{name}_{version}_{arch}.deb"
        deb.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "--root-owner-group", "-b", tree, deb], check=True,
                       capture_output=True)
        data = deb.read_bytes()
        index.append(control + f"Filename: {arch}/{deb.name}\nSize: {len(data)}\n"
                     f"SHA256: {hashlib.sha256(data).hexdigest()}\nDescription: stand-in\n")
    packages = "\n".join(index).encode()
    (repo / "Packages").write_bytes(packages)
    (repo / "Packages.gz").write_bytes(gzip.compress(packages))
    sums = "".join(f" {hashlib.sha256(p.read_bytes()).hexdigest()} {p.stat().st_size} {p.name}\n"
                   for p in (repo / "Packages", repo / "Packages.gz"))
    (repo / "Release").write_text("Origin: stand-in\nLabel: stand-in\nArchitectures: amd64 arm64\n"
                                  "Date: Thu, 01 Jan 2026 00:00:00 UTC\nSHA256:\n" + sums)
    gpg = ["gpg", "--homedir", str(gnupg), "--batch", "--yes", "--passphrase", ""]
    subprocess.run([*gpg, "--quick-gen-key", "stand-in <kit@example.invalid>", "ed25519", "sign",
                    "never"], check=True, capture_output=True)
    subprocess.run([*gpg, "--armor", "--output", str(repo / "Release.key"), "--export"],
                   check=True, capture_output=True)
    subprocess.run([*gpg, "--clearsign", "--output", str(repo / "InRelease"),
                    str(repo / "Release")], check=True, capture_output=True)
    return repo


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(the stand-in's kubernetes_apt_base_url, its repository directory), served on loopback."""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="gpg") as gnupg:  # short: agent socket
        repo = build_upstream(tmp_path / "upstream", Path(gnupg))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(tmp_path / "upstream"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/core:/stable:", repo
    server.shutdown()
    server.server_close()


def planned_repo(base_url: str) -> bundle.Item:
    """The plan's repo item, rendered from the role's own variables for the stand-in's URL."""
    (item,) = [i for i in bundle.plan() if i.kind == "repo"]
    return bundle.Item("repo", f"{base_url}/v{MAJOR}.{MINOR}/deb/", packages=item.packages)


def test_the_copy_holds_the_signed_index_and_what_the_role_installs(
        tmp_path: Path, upstream: tuple[str, Path]) -> None:
    base_url, _ = upstream
    item = planned_repo(base_url)
    manifest = bundle.fetch([item], tmp_path / "bundle")
    (entry,) = manifest["items"]
    assert entry["fetched"], entry
    prefix = item.file.rstrip("/") + "/"
    files = {f["file"].removeprefix(prefix) for f in entry["files"]}
    debs = {f for f in files if f.endswith(".deb")}
    expected = {f"{arch}/{name}_{version}_{arch}.deb" for name, version, arch, _, _ in STAND_INS
                if name not in ("unrelated", "kubeadm") or version.startswith(KUBE)}
    assert debs == expected  # the pinned kubeadm only, both cri-tools, the dependency, arm64 too
    assert {"InRelease", "Release", "Release.key", "Packages", "Packages.gz"} <= files
    assert ":" not in item.file  # a FAT stick takes it


def test_a_package_that_does_not_match_its_index_is_refused(
        tmp_path: Path, upstream: tuple[str, Path]) -> None:
    base_url, repo = upstream
    (kubectl,) = repo.glob(f"amd64/kubectl_{KUBE}-1.1_amd64.deb")
    kubectl.write_bytes(kubectl.read_bytes() + b"tampered")
    manifest = bundle.fetch([planned_repo(base_url)], tmp_path / "bundle")
    (entry,) = manifest["items"]
    assert not entry["fetched"] and "the index says" in entry["error"], entry
    assert not list((tmp_path / "bundle").rglob("kubectl_*amd64.deb"))
    assert not list((tmp_path / "bundle").rglob("tmp*"))  # no half file


def test_a_pin_the_repository_lacks_is_named() -> None:
    entries = apt_mirror.stanzas("Package: kubeadm\nVersion: 1.0-1\nArchitecture: amd64\n")
    with pytest.raises(apt_mirror.MirrorError, match=r"no kubeadm 2\.0-\*"):
        apt_mirror.select(entries, ("kubeadm=2.0-*",))


def test_the_role_installs_from_the_bundle_alone(
        require_docker: None, tmp_path: Path, upstream: tuple[str, Path]) -> None:
    base_url, _ = upstream
    out = tmp_path / "bundle"
    assert bundle.fetch([planned_repo(base_url)], out)["items"][0]["fetched"]
    with systemd_node("k8s-mirror", tmp_path) as node:
        docker("cp", str(out), f"{node}:/srv/bundle")
        docker("exec", node, "systemd-run", "--unit=bundle-mirror", "python3", "-m",
               "http.server", "8080", "--bind", "127.0.0.1", "--directory", "/srv/bundle")
        role_play(tmp_path, "kubernetes", "main")
        variables = {"kit_mirror_url": "http://127.0.0.1:8080", "kube_version": KUBE,
                     "kubernetes_apt_base_url": base_url, "k8s_node_ip": "127.0.0.1"}
        rc, out_text, changed = converge(tmp_path, **variables)
        assert rc == 0, out_text[-3000:]
        installed = docker("exec", node, "dpkg-query", "-W", "-f", "${Package}=${Version}\\n",
                           "kubeadm", "kubelet", "kubectl", "cri-tools", "kubernetes-cni")
        assert sorted(installed.split()) == sorted([
            f"kubeadm={KUBE}-1.1", f"kubelet={KUBE}-1.1", f"kubectl={KUBE}-1.1",
            f"cri-tools={MAJOR}.{MINOR}.0-1.1", "kubernetes-cni=1.7.1-1.1"])
        assert docker("exec", node, "apt-mark", "showhold").split() == [
            "kubeadm", "kubectl", "kubelet"]
        sources = docker("exec", node, "cat", "/etc/apt/sources.list.d/kubernetes.sources")
        assert "URIs: http://127.0.0.1:8080/repos/127.0.0.1_" in sources, sources
        rc, out_text, changed = converge(tmp_path, **variables)
        assert (rc, changed) == (0, 0), out_text[-3000:]
