"""The apt repositories from the venue bundle: `make bundle` copies pkgs.k8s.io's repository and
NVIDIA's (one per architecture) in part, byte for byte (labctl/apt_mirror.py), and with
kit_mirror_url set the kubernetes role and the nvidia_gpu role's toolkit step install from those
copies, apt checking them against the repositories' own keys.

The "upstreams" are stand-ins built here (tests/ansible/_apt_repo.py), signed by throw-away keys:
Kubernetes' with a kubeadm newer than the pin, two cri-tools, kubelet depending on
kubernetes-cni (and shipping a unit), an unrelated package and an arm64 kubectl; NVIDIA's with
the toolkit's four packages and their dependency chain, and a toolkit newer than the pin. They
are laid out as the real ones are (tests/ansible/_apt_repo.py: NVIDIA's has only InRelease,
hashed with SHA512 only, and Packages.xz). They are served on the host's loopback for the copy
only: the node cannot reach them, so the key, the repository and the packages can only come
from the bundle, served inside the node."""

from __future__ import annotations

import platform
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _apt_repo import Deb, build_repo
from _docker import docker
from _http import directory_server, serving
from _systemd_node import converge, role_play, systemd_node

from labctl import apt_mirror, bundle, versions

pytestmark = [pytest.mark.docker, pytest.mark.slow]
KUBE = versions.get("kube_version")
MAJOR, MINOR, PATCH = KUBE.split(".")
K8S_PATH = f"core:/stable:/v{MAJOR}.{MINOR}/deb"
KUBEADM = """#!/bin/sh
# stand-in for kubeadm config images list --kubernetes-version vX.Y.Z
[ "$1 $2 $3 $4" = "config images list --kubernetes-version" ] || exit 2
for image in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
  echo "registry.k8s.io/$image:$5"
done
echo registry.k8s.io/coredns/coredns:v0.0.1-stand-in
echo registry.k8s.io/etcd:0.0.1-stand-in
"""
KUBELET_UNIT = """[Unit]
Description=stand-in kubelet
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
"""
K8S = [
    Deb("kubeadm", f"{KUBE}-1.1", "amd64", files={"usr/bin/kubeadm": KUBEADM}),
    Deb("kubeadm", f"{MAJOR}.{MINOR}.{int(PATCH) + 1}-1.1", "amd64"),  # newer than the pin
    Deb("kubelet", f"{KUBE}-1.1", "amd64", "kubernetes-cni (>= 1.2.0)",
        {"lib/systemd/system/kubelet.service": KUBELET_UNIT}),
    Deb("kubectl", f"{KUBE}-1.1", "amd64"),
    Deb("kubectl", f"{KUBE}-1.1", "arm64"),
    Deb("cri-tools", f"{MAJOR}.{int(MINOR) - 1}.0-1.1", "amd64"),
    Deb("cri-tools", f"{MAJOR}.{MINOR}.0-1.1", "amd64"),
    Deb("kubernetes-cni", "1.7.1-1.1", "amd64"),
    Deb("unrelated", "1.0-1", "amd64"),
]
WAIT_FOR_PORT = """import socket, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", 8080), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
"""
TOOLKIT = versions.get("nvidia_gpu_toolkit_version")
NVIDIA_PATH = "libnvidia-container/stable/deb/amd64"
NVIDIA = [
    Deb("nvidia-container-toolkit", TOOLKIT, "amd64",
        f"nvidia-container-toolkit-base (= {TOOLKIT}), libnvidia-container-tools (>= {TOOLKIT})"),
    Deb("nvidia-container-toolkit", f"9{TOOLKIT}", "amd64"),  # newer than the pin
    Deb("nvidia-container-toolkit-base", TOOLKIT, "amd64"),
    Deb("libnvidia-container-tools", TOOLKIT, "amd64", f"libnvidia-container1 (>= {TOOLKIT})"),
    Deb("libnvidia-container1", TOOLKIT, "amd64"),
]


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(its URL, its directory): both stand-ins, served on loopback."""
    root = tmp_path / "upstream"
    build_repo(root / K8S_PATH, K8S, pool="{arch}", signed=True)
    build_repo(root / NVIDIA_PATH, NVIDIA, signed=True, like_nvidia=True,
               key=root / "libnvidia-container/gpgkey")
    with serving(directory_server(root)) as address:
        yield f"http://{address}", root


def packages_of(source: str) -> tuple[str, ...]:
    """What the plan, from the roles' own variables, has apt install from that repository."""
    (item,) = [i for i in bundle.plan() if i.kind == "repo" and i.source.startswith(source)]
    return item.packages


def k8s_item(url: str) -> bundle.Item:
    return bundle.Item("repo", f"{url}/{K8S_PATH}/", packages=packages_of("https://pkgs.k8s.io"))


def nvidia_items(url: str) -> list[bundle.Item]:
    specs = packages_of("https://nvidia.github.io/libnvidia-container/stable/deb/amd64")
    return [bundle.Item("repo", f"{url}/{NVIDIA_PATH}/", "amd64", specs),
            bundle.Item("key", f"{url}/libnvidia-container/gpgkey")]


def test_the_copy_holds_the_signed_index_and_what_the_role_installs(
        tmp_path: Path, upstream: tuple[str, Path]) -> None:
    url, _ = upstream
    item = k8s_item(url)
    (entry,) = bundle.fetch([item], tmp_path / "bundle", image_arches=())["items"]
    assert entry["fetched"], entry
    files = {f["file"].removeprefix(item.file) for f in entry["files"]}
    # the pinned kubeadm only, both cri-tools, kubelet's dependency, the arm64 kubectl too
    assert {f for f in files if f.endswith(".deb")} == {
        d.filename("{arch}").removeprefix("./") for d in K8S
        if d.name not in ("unrelated", "kubeadm") or d.version.startswith(KUBE)}
    assert {"InRelease", "Release", "Release.key", "Packages", "Packages.gz"} <= files
    assert ":" not in item.file  # an exFAT stick takes it


def test_kubeadms_own_images_join_the_bundle(tmp_path: Path, upstream: tuple[str, Path],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The copied kubeadm names CoreDNS's image (its own choice); etcd's is left out. (The
    images are not pulled: `docker save` is recorded instead.)"""
    if bundle.ARCH_OF.get(platform.machine()) != "amd64" or sys.platform != "linux":
        pytest.skip("the stand-in kubeadm is an amd64 package: it runs on Linux x86_64")
    url, _ = upstream
    saved: list[tuple[str, str]] = []

    def save(image: str, dest: Path, arch: str) -> None:
        saved.append((image, arch))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b"stand-in")

    monkeypatch.setattr(bundle, "_save_image", save)
    entries = bundle.fetch([k8s_item(url)], tmp_path / "bundle", image_arches=("amd64",))["items"]
    images = {e["source"] for e in entries if e["kind"] == "image" and e["fetched"]}
    assert sorted(saved) == sorted((image, "amd64") for image in images)
    assert images == {f"registry.k8s.io/{c}:v{KUBE}" for c in bundle.KUBEADM_IMAGES} | {
        "registry.k8s.io/coredns/coredns:v0.0.1-stand-in"}


def test_nvidias_layout_is_copied_too(tmp_path: Path, upstream: tuple[str, Path]) -> None:
    url, _ = upstream
    repo, key = nvidia_items(url)
    entries = bundle.fetch([repo, key], tmp_path / "bundle")["items"]
    assert all(e["fetched"] for e in entries), entries
    files = {f["file"].removeprefix(repo.file) for f in entries[0]["files"]}
    assert files == {"InRelease", "Packages", "Packages.xz",
                     *(f"{d.name}_{d.version}_{d.arch}.deb" for d in NVIDIA
                       if d.version == TOOLKIT)}


def test_a_package_that_does_not_match_its_index_is_refused(
        tmp_path: Path, upstream: tuple[str, Path]) -> None:
    url, root = upstream
    (kubectl,) = (root / K8S_PATH).glob(f"amd64/kubectl_{KUBE}-1.1_amd64.deb")
    kubectl.write_bytes(kubectl.read_bytes() + b"tampered")
    (entry,) = bundle.fetch([k8s_item(url)], tmp_path / "bundle", image_arches=())["items"]
    assert not entry["fetched"] and "the index says" in entry["error"], entry
    assert not list((tmp_path / "bundle").rglob("kubectl_*amd64.deb"))
    assert not list((tmp_path / "bundle").rglob("tmp*"))  # no half file


def test_a_pin_the_repository_lacks_is_named() -> None:
    entries = apt_mirror.stanzas("Package: kubeadm\nVersion: 1.0-1\nArchitecture: amd64\n")
    with pytest.raises(apt_mirror.MirrorError, match=r"no kubeadm 2\.0-\*"):
        apt_mirror.select(entries, ("kubeadm=2.0-*",))


def installed(node: str, *names: str) -> list[str]:
    return sorted(docker("exec", node, "dpkg-query", "-W", "-f", "${Package}=${Version}\\n",
                         *names).split())


def test_the_roles_install_from_the_bundle_alone(
        require_docker: None, tmp_path: Path, upstream: tuple[str, Path]) -> None:
    url, _ = upstream
    out = tmp_path / "bundle"
    manifest = bundle.fetch([k8s_item(url), *nvidia_items(url)], out, image_arches=())
    assert all(e["fetched"] for e in manifest["items"]), manifest
    with systemd_node("apt-mirror", tmp_path) as node:
        docker("cp", str(out), f"{node}:/srv/bundle")
        docker("exec", node, "systemd-run", "--unit=bundle-mirror", "python3", "-m",
               "http.server", "8080", "--bind", "127.0.0.1", "--directory", "/srv/bundle")
        docker("exec", node, "python3", "-c", WAIT_FOR_PORT)
        # The image's apt lists are empty but fresh: valid time 0 has the role update them.
        common = {"kit_mirror_url": "http://127.0.0.1:8080", "kube_version": KUBE,
                  "kubernetes_apt_cache_valid_time": 0}

        role_play(tmp_path, "kubernetes", "main")
        k8s = {**common, "kubernetes_apt_base_url": f"{url}/core:/stable:",
               "k8s_node_ip": "127.0.0.1"}
        rc, text, changed = converge(tmp_path, **k8s)
        assert rc == 0, text[-3000:]
        assert installed(node, "kubeadm", "kubelet", "kubectl", "cri-tools", "kubernetes-cni") == [
            f"cri-tools={MAJOR}.{MINOR}.0-1.1", f"kubeadm={KUBE}-1.1", f"kubectl={KUBE}-1.1",
            f"kubelet={KUBE}-1.1", "kubernetes-cni=1.7.1-1.1"]
        assert docker("exec", node, "apt-mark", "showhold").split() == [
            "kubeadm", "kubectl", "kubelet"]
        sources = docker("exec", node, "cat", "/etc/apt/sources.list.d/kubernetes.sources")
        assert "URIs: http://127.0.0.1:8080/repos/127.0.0.1_" in sources, sources
        rc, text, changed = converge(tmp_path, **k8s)
        assert (rc, changed) == (0, 0), text[-3000:]

        role_play(tmp_path, "nvidia_gpu", "toolkit")
        line = (f"deb [signed-by=/etc/apt/keyrings/nvidia-container-toolkit.asc] "
                f"{url}/libnvidia-container/stable/deb/$(ARCH) /")
        gpu = {**common, "nvidia_gpu_toolkit_repo": line,
               "nvidia_gpu_toolkit_key_url": f"{url}/libnvidia-container/gpgkey"}
        rc, text, changed = converge(tmp_path, **gpu)
        assert rc == 0, text[-3000:]
        assert installed(node, *(d.name for d in NVIDIA[2:]), NVIDIA[0].name) == sorted(
            f"{d.name}={TOOLKIT}" for d in NVIDIA if d.version == TOOLKIT)
        rc, text, changed = converge(tmp_path, **gpu)
        assert (rc, changed) == (0, 0), text[-3000:]
