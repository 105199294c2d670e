"""The venue bundle (labctl/bundle.py): every URL and image the roles, versions.yml and the lab
manifests name is in its plan, so that a version bump or a new download cannot leave the bundle
incomplete; and `fetch` writes what it fetched, with sizes and sha256, into manifest.json."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from _http import directory_server, serving
from _prereqs import docker_available, missing

from labctl import bundle, versions
from labctl.labs import REPO

URL = re.compile(r"https?://[^\s\"'`,]+")
IMAGE = re.compile(r"^[a-z0-9.-]+(?:/[a-z0-9._-]+)+:[\w.-]+$")
IMAGE_RAW = re.compile(r"^[a-z0-9.-]+(?:/[a-z0-9._-]+)+:(?:\{\{|[\w.-]+$)")  # tag may be a var
# Variables that hold a URL but name no download, each with why.
NOT_DOWNLOADS = {
    "_containerd_registry_servers": "a registry's API endpoint, used by hosts.toml, not a file",
    "control_plane_cri_socket": "a local socket",
    "_etcd_client_url": "a node's own etcd endpoint",
    "_etcd_peer_url": "a node's own etcd endpoint",
    "_etcd_member_urls": "the cluster's etcd endpoints",
    "_control_plane_etcd_endpoints": "the cluster's etcd endpoints",
    # parts of the URLs the plan renders whole (the test checks that the whole ones are in it)
    "containerd_release_base_url": "a prefix of _containerd_release_artifacts",
    "containerd_runc_base_url": "a prefix of _containerd_release_artifacts",
    "containerd_cni_plugins_base_url": "a prefix of _containerd_release_artifacts",
    "kubernetes_apt_base_url": "a prefix of _kubernetes_apt_repo_url",
    "nvidia_gpu_toolkit_repo": "a sources line whose URL, $(ARCH) filled in, is "
                               "_nvidia_gpu_toolkit_repo_url (a repo item per architecture)",
}


@functools.cache
def planned() -> set[str]:
    return {item.source for item in bundle.plan()}


def var_files() -> list[Path]:
    return [REPO / "versions.yml", *sorted((REPO / "roles").glob("*/defaults/main.yml")),
            *sorted((REPO / "roles").glob("*/vars/main.yml"))]


def named_downloads() -> Iterator[tuple[str, str]]:
    """(variable, its raw YAML) for every variable that holds a URL or looks like an image."""
    for path in var_files():
        for name, value in (yaml.safe_load(path.read_text()) or {}).items():
            raw = yaml.safe_dump(value)
            images = [v for v in (value if isinstance(value, list) else [value])
                      if isinstance(v, str) and IMAGE_RAW.match(v)]
            if "://" in raw or name.endswith("_image") or images:
                yield name, raw


def test_the_plan_has_each_kind_for_each_architecture() -> None:
    items = bundle.plan()
    kinds = {(i.kind, i.arch) for i in items}
    assert {("release", "amd64"), ("release", "arm64"), ("manifest", "any"),
            ("image", "amd64"), ("image", "arm64"), ("box", "any"), ("key", "any"),
            ("repo", "any"), ("repo", "amd64"), ("repo", "arm64"), ("wheel", "amd64"),
            ("wheel", "arm64")} <= kinds
    tf = versions.get("tensorflow_version")
    assert {f"tensorflow/tensorflow:{tf}", f"tensorflow/serving:{tf}",
            f"registry.k8s.io/kube-apiserver:v{versions.get('kube_version')}"} <= planned()
    files = [i.file for i in items if i.file and i.kind != "wheel"]  # wheels share a folder
    assert len(set(files)) == len(files)


@pytest.mark.parametrize("arch", list(bundle.ARCHES))
def test_every_url_and_image_the_roles_name_is_in_the_plan(arch: str) -> None:
    render = bundle.renderer(arch)
    named = dict(named_downloads())
    assert {"etcd_release_url", "nfs_provisioner_image", "lab_images_all"} <= set(named)
    missing_from_plan = []
    for name in named:
        if name in NOT_DOWNLOADS:
            continue
        rendered = render(name)
        values = rendered if isinstance(rendered, list) else [rendered]
        found = [u.removesuffix("/") for v in values for u in URL.findall(json.dumps(v))]
        found += [v for v in values if isinstance(v, str) and IMAGE.match(v)]
        assert found, f"{name} names neither a URL nor an image: {rendered!r}"
        wanted = {s.removesuffix("/") for s in planned()}
        missing_from_plan += [f"{name}: {u}" for u in found if u not in wanted]
    assert missing_from_plan == [], "add these to labctl/bundle.py (or to NOT_DOWNLOADS here)"


def test_not_downloads_are_still_variables() -> None:
    assert set(NOT_DOWNLOADS) <= set(dict(named_downloads())), "drop the names that are gone"


def test_tasks_and_templates_download_only_through_variables() -> None:
    """A URL written into a task or a template would bypass the plan: only loopback, a node's
    own endpoints (templated hosts) and documentation links may appear there."""
    allowed = re.compile(r"https?://(127\.0\.0\.1|\{\{|\\S|mirror\.example|containerd\.io$|"
                         r"etcd\.io/docs$|' ~)")
    found = []
    for path in sorted((REPO / "roles").glob("*/*/*")) + sorted((REPO / "playbooks").glob("*")):
        if path.is_file() and path.parent.name in ("tasks", "templates", "handlers", "playbooks"):
            for line in path.read_text().splitlines():
                found += [f"{path.relative_to(REPO)}: {url}" for url in URL.findall(line)
                          if not allowed.match(url)]
    assert found == []


def test_the_lab_manifests_images_are_in_the_plan() -> None:
    tf = versions.get("tensorflow_version")
    images = set()
    for path in sorted((REPO / "labs").glob("*/manifests/*.yaml")):
        for ref in bundle.manifest_images(path):
            images.add(ref.replace("${tf_version}", tf)
                       .replace("${image}", f"tensorflow/tensorflow:{tf}"))
    assert images and images <= planned()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "served"
    root.mkdir()
    (root / "etcd.tar.gz").write_bytes(b"release bytes" * 1000)
    (root / "cni.yaml").write_text("spec:\n  containers:\n    - name: x\n"
                                   "      image: local/bundle-test:1\n")
    with serving(directory_server(root)) as address:
        yield f"http://{address}"


def test_fetch_writes_files_images_and_a_manifest(tmp_path: Path, served: str) -> None:
    if not docker_available():
        missing("Docker is not running (make docker starts it)")
    # a tiny local image stands in for the registry's: `docker import` of an empty tarball
    subprocess.run(["docker", "import", "-", "local/bundle-test:1"], input=b"\0" * 10240,
                   check=True, capture_output=True)
    try:
        out = tmp_path / "bundle"
        items = [bundle.Item("release", f"{served}/etcd.tar.gz", "amd64"),
                 bundle.Item("manifest", f"{served}/cni.yaml"),
                 bundle.Item("release", f"{served}/gone.tgz", "arm64"),
                 bundle.Item("box", "some/box@1 virtualbox")]
        manifest = bundle.fetch(items, out, image_arches=("any",))  # as it is here
    finally:
        subprocess.run(["docker", "rmi", "local/bundle-test:1"], capture_output=True,
                       check=False)
    assert json.loads((out / "manifest.json").read_text()) == manifest
    by_source = {e["source"]: e for e in manifest["items"]}
    release = by_source[f"{served}/etcd.tar.gz"]
    data = (out / release["file"]).read_bytes()
    assert release["fetched"] and release["size"] == len(data) == 13000
    assert release["sha256"] == hashlib.sha256(data).hexdigest()
    image = by_source["local/bundle-test:1"]  # found in the fetched manifest
    assert image["fetched"] and image["size"] > 0 and (out / image["file"]).is_file()
    gone = by_source[f"{served}/gone.tgz"]
    assert not gone["fetched"] and "404" in gone["error"]
    assert not list(out.rglob("gone.tgz*")) and not list(out.rglob("tmp*"))  # no half file
    box = by_source["some/box@1 virtualbox"]
    assert not box["fetched"] and "vagrant box add" in box["how"]
    assert manifest["size"] == sum(e.get("size", 0) for e in manifest["items"])
