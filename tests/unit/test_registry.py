"""The bundle's registry (labctl/registry.py, `python -m labctl.bundle serve`), pulled from by
real clients: Docker, and containerd's own resolver (`ctr images pull --hosts-dir`, the code
the CRI plugin pulls with) through the hosts.toml the containerd role writes for a `_default`
mirror. The images are tiny ones made here (`docker import`), saved into a bundle by
bundle.fetch as `make bundle` saves the real ones."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from _http import serving
from _prereqs import docker_available, missing

from labctl import bundle, registry
from labctl.labs import REPO

pytestmark = pytest.mark.docker

# One image under two names: a registry host that does not exist (so the pull can only have
# come from the mirror), and a Docker Hub name as the lab images have.
REFS = ("mirror-test.example/kit/tiny:1", "kit/tiny:1")
SOCKETS = (Path("/run/containerd/containerd.sock"),
           Path("/var/run/docker/containerd/containerd.sock"))  # Debian's docker.io runs its own
NAMESPACE = "kit-registry-test"


@pytest.mark.parametrize(("reference", "parts"), [
    ("tensorflow/serving:2.1", ("docker.io", "tensorflow/serving", "2.1")),
    ("busybox", ("docker.io", "library/busybox", "latest")),
    ("registry.k8s.io/pause:3.10", ("registry.k8s.io", "pause", "3.10")),
    ("localhost:5000/a/b", ("localhost:5000", "a/b", "latest")),
    ("ghcr.io/flannel-io/flannel:v0.26.1@sha256:ab", ("ghcr.io", "flannel-io/flannel", "v0.26.1")),
])
def test_split_reference(reference: str, parts: tuple[str, str, str]) -> None:
    assert registry.split_reference(reference) == parts


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle holding the two names, saved by bundle.fetch."""
    if not docker_available():
        missing("Docker is not running (make docker starts it)")
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    out = tmp_path_factory.mktemp("bundle")
    try:
        subprocess.run(["docker", "import", "-", REFS[0]], input=layer.getvalue(), check=True,
                       capture_output=True)
        subprocess.run(["docker", "tag", REFS[0], REFS[1]], check=True)
        manifest = bundle.fetch([bundle.Item("image", ref) for ref in REFS], out)
    finally:
        subprocess.run(["docker", "rmi", *REFS], capture_output=True, check=False)
    assert all(entry["fetched"] for entry in manifest["items"]), manifest
    return out


def serve(root: Path) -> AbstractContextManager[str]:
    """The bundle at `root` served as `make serve-bundle` serves it; its host:port."""
    return serving(registry.server(root, registry.load(root / "images"), "127.0.0.1", 0))


@pytest.fixture(scope="module")
def mirror(saved: Path) -> Iterator[str]:
    with serve(saved) as address:
        yield address


def image_id(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        handle = tar.extractfile("manifest.json")
        assert handle is not None
        return "sha256:" + json.loads(handle.read())[0]["Config"].removesuffix(".json")


def test_docker_pulls_an_image_from_the_bundle(saved: Path, mirror: str) -> None:
    pulled = f"{mirror}/kit/tiny:1"
    try:
        proc = subprocess.run(["docker", "pull", pulled], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        got = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", pulled],
                             capture_output=True, text=True, check=True).stdout.strip()
    finally:
        subprocess.run(["docker", "rmi", pulled], capture_output=True, check=False)
    (archive,) = (saved / "images").glob("kit_tiny_1.tar")
    assert got == image_id(archive)  # the same config, hence the same layers


def hosts_toml(mirror_url: str) -> str:
    """The containerd role's hosts.toml for containerd_registry_mirrors {_default: [URL]}."""
    render = bundle.template_renderer("amd64", ansible_managed="Ansible managed",
                                      containerd_registry="_default",
                                      containerd_registry_mirrors={"_default": [mirror_url]})
    return render((REPO / "roles/containerd/templates/hosts.toml.j2").read_text())


def ctr(*args: str) -> subprocess.CompletedProcess[str]:
    socket = next((s for s in SOCKETS if s.is_socket()), None)
    if socket is None:
        missing("no containerd socket (make docker starts Docker and its containerd)")
    return subprocess.run(["ctr", "--address", str(socket), "--namespace", NAMESPACE, *args],
                          capture_output=True, text=True, timeout=120, check=False)


def pull_through_default_mirror(root: Path, address: str, reference: str) -> None:
    """`ctr images pull` of `reference` with the role's _default hosts.toml: containerd checks
    every digest, and unpacks the layers."""
    hosts = root / "certs.d"
    (hosts / "_default").mkdir(parents=True)
    (hosts / "_default" / "hosts.toml").write_text(hosts_toml(f"http://{address}"))
    try:
        proc = ctr("images", "pull", "--hosts-dir", str(hosts), reference)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
        assert reference in ctr("images", "ls", "-q").stdout.split()
    finally:
        ctr("images", "rm", reference)


def test_containerd_pulls_through_the_roles_default_mirror(
        tmp_path: Path, saved: Path, mirror: str) -> None:
    if subprocess.run(["which", "ctr"], capture_output=True, check=False).returncode:
        missing("ctr is not installed (Debian's containerd package has it)")
    for reference in (REFS[0], f"docker.io/{REFS[1]}"):  # as the CRI names a Docker Hub image
        pull_through_default_mirror(tmp_path / reference.replace("/", "_"), mirror, reference)


@pytest.mark.parametrize("store", ["classic", "containerd"])
def test_an_oci_layout_archive_is_served_as_saved(tmp_path: Path, saved: Path, store: str) -> None:
    """Docker 25 and later save an OCI image layout. Built here from the older archive (this
    machine's Docker writes that one), with the annotation those Dockers write: the classic
    image store names the image's manifest; the containerd image store names the whole index,
    and holds the blobs of the platform it pulled only (here amd64, not arm64)."""
    (legacy,) = (saved / "images").glob("mirror-test*.tar")
    with tarfile.open(legacy) as tar:
        entry = json.loads(tar.extractfile("manifest.json").read())[0]  # type: ignore[union-attr]
        config = tar.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
        layers = [tar.extractfile(name).read() for name in entry["Layers"]]  # type: ignore[union-attr]
    blobs = {registry._digest(b): b for b in [config, *layers]}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": registry.OCI_MANIFEST,
        "config": {"mediaType": registry.OCI_CONFIG, "digest": registry._digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": registry.OCI_LAYER_TAR, "digest": registry._digest(layer),
                    "size": len(layer)} for layer in layers]}).encode()
    blobs[registry._digest(manifest)] = manifest
    named = {"mediaType": registry.OCI_MANIFEST, "digest": registry._digest(manifest),
             "size": len(manifest)}
    if store == "containerd":
        image_index = json.dumps({"schemaVersion": 2, "mediaType": registry.OCI_INDEX,
                                  "manifests": [
            {**named, "platform": {"architecture": "amd64", "os": "linux"}},
            {**named, "digest": "sha256:" + "1" * 64,  # arm64's: not in the archive
             "platform": {"architecture": "arm64", "os": "linux"}}]}).encode()
        blobs[registry._digest(image_index)] = image_index
        named = {"mediaType": registry.OCI_INDEX, "digest": registry._digest(image_index),
                 "size": len(image_index)}
    index = {"schemaVersion": 2, "manifests": [{
        **named, "annotations": {"io.containerd.image.name": "oci-test.example/kit/tiny:2",
                                 "org.opencontainers.image.ref.name": "2"}}]}
    root = tmp_path / "oci"
    (root / "images").mkdir(parents=True)
    with tarfile.open(root / "images" / "oci.tar", "w") as tar:
        for name, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                           ("index.json", json.dumps(index).encode()),
                           *((f"blobs/sha256/{d[7:]}", b) for d, b in blobs.items())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert registry.architectures(root / "images" / "oci.tar") == {"amd64"}
    with serve(root) as address:
        pull_through_default_mirror(tmp_path, address, "oci-test.example/kit/tiny:2")


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method)) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_the_api_answers_and_the_files_are_served(saved: Path, mirror: str) -> None:
    base = f"http://{mirror}"
    status, headers, _ = get(f"{base}/v2/")
    assert status == 200 and headers["Docker-Distribution-API-Version"] == "registry/2.0"
    status, headers, body = get(f"{base}/v2/kit/tiny/manifests/1?ns=docker.io", "HEAD")
    assert status == 200 and body == b""
    digest = headers["Docker-Content-Digest"]
    status, _, body = get(f"{base}/v2/kit/tiny/manifests/{digest}")
    assert status == 200 and registry._digest(body) == digest
    for layer in json.loads(body)["layers"]:
        status, _, blob = get(f"{base}/v2/kit/tiny/blobs/{layer['digest']}")
        assert status == 200 and registry._digest(blob) == layer["digest"]
    # another registry's name, an unknown tag and blob: the registry's 404s
    for path, code in [("kit/tiny/manifests/1?ns=quay.io", "MANIFEST_UNKNOWN"),
                       ("kit/tiny/manifests/2", "MANIFEST_UNKNOWN"),
                       ("kit/tiny/blobs/sha256:" + "0" * 64, "BLOB_UNKNOWN")]:
        status, _, body = get(f"{base}/v2/{path}")
        assert (status, json.loads(body)["errors"][0]["code"]) == (404, code), path
    # the rest of the bundle, for kit_mirror_url; no directory listings
    status, _, body = get(f"{base}/manifest.json")
    assert status == 200 and json.loads(body)["items"]
    assert get(f"{base}/images/")[0] == 404


def labctl_bundle(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labctl.bundle", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("files", "error"), [
    ({"x.tar": b"not a tar"}, "x.tar: not an image archive of `docker save`"),
    ({}, "does not exist: name the folder `make bundle` filled"),
])
def test_serve_refuses_what_it_cannot_serve(tmp_path: Path, files: dict[str, bytes],
                                            error: str) -> None:
    if files:
        (tmp_path / "images").mkdir()
        for name, data in files.items():
            (tmp_path / "images" / name).write_bytes(data)
    proc = labctl_bundle("serve", str(tmp_path), "--port", "0")
    assert proc.returncode == 2 and error in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_an_archive_that_names_no_image_is_refused(tmp_path: Path, saved: Path) -> None:
    (archive,) = (saved / "images").glob("kit_tiny_1.tar")
    with tarfile.open(archive) as src, tarfile.open(tmp_path / "x.tar", "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if member.name == "manifest.json" and data is not None:
                entries = json.loads(data.read())
                body = json.dumps([{**e, "RepoTags": None} for e in entries]).encode()
                member.size, data = len(body), io.BytesIO(body)
            dst.addfile(member, data)
    with pytest.raises(registry.ArchiveError, match="names no image"):
        registry.load(tmp_path)


def test_a_busy_port_is_one_line(tmp_path: Path, mirror: str) -> None:
    (tmp_path / "images").mkdir()
    proc = labctl_bundle("serve", str(tmp_path), "--port", mirror.rsplit(":", 1)[1])
    assert proc.returncode == 2 and "cannot serve on 127.0.0.1:" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def for_arm64(archive: Path, dest: Path) -> None:
    """A copy of a Docker-layout archive whose image says arm64 (its config changed, hence its
    name): this machine's Docker cannot make a foreign image without a registry."""
    with tarfile.open(archive) as src, tarfile.open(dest, "w") as dst:
        (entry,) = json.loads(src.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config = json.loads(src.extractfile(entry["Config"]).read())  # type: ignore[union-attr]
        body = json.dumps({**config, "architecture": "arm64"}).encode()
        renamed = {entry["Config"]: (f"{registry._digest(body)[7:]}.json", body),
                   "manifest.json": ("manifest.json", json.dumps(
                       [{**entry, "Config": f"{registry._digest(body)[7:]}.json"}]).encode())}
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if member.name in renamed:
                member.name, replaced = renamed[member.name]
                member.size, data = len(replaced), io.BytesIO(replaced)
            dst.addfile(member, data)


def architecture(image: str, field: str = "{{.Architecture}}") -> str:
    return subprocess.run(["docker", "image", "inspect", "-f", field, image],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_an_image_saved_for_two_architectures_is_served_as_an_index(
        tmp_path: Path, saved: Path) -> None:
    root = tmp_path / "two"
    (root / "images").mkdir(parents=True)
    (amd64,) = (saved / "images").glob("kit_tiny_1.tar")
    shutil.copy(amd64, root / "images" / "kit_tiny_1_amd64.tar")
    for_arm64(amd64, root / "images" / "kit_tiny_1_arm64.tar")
    with serve(root) as address:
        pulled, ids = f"{address}/kit/tiny:1", []
        try:
            # Docker picks the platform it is asked for from the index, or its own
            for platform, expected in (("linux/arm64", "arm64"), ("", "amd64")):
                proc = subprocess.run(["docker", "pull", *(["--platform", platform] if platform
                                                          else []), pulled],
                                      capture_output=True, text=True, check=False)
                assert proc.returncode == 0, proc.stderr
                ids.append(architecture(pulled, "{{.Id}}"))
                assert architecture(pulled) == expected
            # make bundle saves each architecture from such an index, and checks what it saved
            out = tmp_path / "bundle"
            manifest = bundle.fetch([bundle.Item("image", pulled, arch)
                                     for arch in ("arm64", "amd64")], out)
            assert all(e["fetched"] for e in manifest["items"]), manifest
            for entry in manifest["items"]:
                assert registry.architectures(out / entry["file"]) == {entry["arch"]}
        finally:  # both platforms' images: the tag names only the last one pulled
            subprocess.run(["docker", "rmi", "-f", pulled, *ids], capture_output=True,
                           check=False)


def test_an_image_without_the_architecture_is_not_saved_as_one(
        tmp_path: Path, saved: Path, mirror: str) -> None:
    pulled = f"{mirror}/kit/tiny:1"  # amd64 only
    try:
        manifest = bundle.fetch([bundle.Item("image", pulled, "arm64")], tmp_path)
    finally:
        subprocess.run(["docker", "rmi", pulled], capture_output=True, check=False)
    (entry,) = manifest["items"]
    assert not entry["fetched"] and entry["error"], entry
    assert not list((tmp_path / "images").glob("*"))  # no archive of the wrong kind left
