"""A read-only container registry over a venue bundle's image archives (`docker save` tars).

The nodes pull through containerd's registry mirrors (hosts.toml) from the instructor's
machine, so no image needs the internet on the day. It answers the pull half of the OCI
distribution spec: `GET|HEAD /v2/`, `/v2/<name>/manifests/<tag|digest>` and
`/v2/<name>/blobs/<digest>`, with `?ns=<registry>` as containerd sends it to a mirror.

An image saved for several architectures (one archive each, as `make bundle` saves them) is
served as an OCI image index over them. Two archive layouts, both read in place (nothing is
unpacked):
- OCI image layout (`docker save` of Docker 25 and later: index.json, blobs/sha256/...): its
  manifests and blobs are served as they are.
- Docker's older layout (manifest.json, <id>/layer.tar, <id>.json): an OCI image manifest is
  built for it, whose layers are the uncompressed layer.tar files. Their digests are the
  config's rootfs.diff_ids, which `docker load` itself checks them against.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import posixpath
import re
import tarfile
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFESTS = (OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json")
INDEXES = (OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json")
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
_ROUTE = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")
_CHUNK = 1 << 20


class ArchiveError(ValueError):
    """An image archive this registry cannot read."""


@dataclass(frozen=True)
class Blob:
    """Content served by digest: bytes built here, or a member of an archive."""

    media_type: str
    size: int
    data: bytes | None = None
    archive: Path | None = None
    offset: int = 0


Key = tuple[str, str, str]  # (registry, repository, tag)


@dataclass
class Store:
    tags: dict[Key, str] = field(default_factory=dict)  # -> the manifest (or index) digest
    blobs: dict[str, Blob] = field(default_factory=dict)  # digest -> content, manifests too
    found: dict[Key, list[str]] = field(default_factory=dict)  # every archive's, before finish()
    named: int = 0  # names the archives recorded

    def tag(self, reference: str, digest: str) -> None:
        self.named += 1
        digests = self.found.setdefault(split_reference(reference), [])
        if digest not in digests:
            digests.append(digest)

    def read(self, digest: str) -> bytes:
        blob = self.blobs[digest]
        if blob.data is not None:
            return blob.data
        assert blob.archive is not None
        with blob.archive.open("rb") as f:
            f.seek(blob.offset)
            return f.read(blob.size)

    def manifest_digest(self, name: str, ref: str, registry: str | None) -> str | None:
        """The digest a manifest request names: `ref` itself, or the tag of `name` in
        `registry` (any registry when the client did not say, e.g. `docker pull HOST/name`)."""
        if ref.startswith("sha256:"):
            return ref if ref in self.blobs else None
        names = {name, f"library/{name}"} if "/" not in name else {name}
        for (reg, repo, tag), digest in sorted(self.tags.items()):
            if repo in names and tag == ref and registry in (None, reg):
                return digest
        return None

    def images(self, digest: str) -> list[tuple[str, dict[str, str]]]:
        """(manifest digest, platform) of each image under `digest` that the archives hold: the
        manifest itself, or an index's children present (Docker's containerd image store saves
        the whole index, with the blobs of the platforms it pulled only)."""
        blob = self.blobs.get(digest)
        if blob is None:
            return []
        if blob.media_type in MANIFESTS:
            config = json.loads(self.read(json.loads(self.read(digest))["config"]["digest"]))
            return [(digest, {k: config[k] for k in ("architecture", "os", "variant")
                              if config.get(k)})]
        if blob.media_type in INDEXES:
            return [image for child in json.loads(self.read(digest)).get("manifests", [])
                    for image in self.images(child["digest"])]
        return []

    def finish(self) -> None:
        """Tag each image; one saved for several architectures (an archive each) gets an OCI
        image index over them, from which a node pulls its own."""
        for key, digests in self.found.items():
            name = f"{key[0]}/{key[1]}:{key[2]}"
            if len(digests) == 1:
                self.tags[key] = digests[0]
                continue
            try:
                found = [image for digest in digests for image in self.images(digest)]
            except (ValueError, KeyError, TypeError) as err:
                raise ArchiveError(f"{name}: a manifest or config in its archives is not "
                                   f"readable ({err!r})") from None
            images = dict(sorted((json.dumps(p, sort_keys=True), d) for d, p in found))
            if len(images) < len(found) or not images:
                raise ArchiveError(f"several archives hold {name} for the same architecture "
                                   "(an older bundle's?): keep one archive per architecture")
            index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": self.blobs[d].media_type, "digest": d, "size": self.blobs[d].size,
                 "platform": json.loads(p)} for p, d in images.items()]},
                separators=(",", ":")).encode()
            self.blobs[_digest(index)] = Blob(OCI_INDEX, len(index), index)
            self.tags[key] = _digest(index)


def split_reference(reference: str) -> tuple[str, str, str]:
    """`tensorflow/serving:2` -> (docker.io, tensorflow/serving, 2), as Docker reads a name:
    the first component is a registry only if it has a dot or a port, or is localhost."""
    name, _, tag = reference.partition("@")[0].rpartition(":")
    if not name or "/" in tag:  # no tag, or the colon was a registry's port
        name, tag = reference.partition("@")[0], "latest"
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repo = first, rest
    else:
        registry, repo = "docker.io", name
    if registry == "docker.io" and "/" not in repo:
        repo = f"library/{repo}"
    return registry, repo, tag


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _member(tar: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    """A member by name, following the symlinks `docker save` writes for shared layers."""
    for _ in range(8):
        try:
            info = tar.getmember(name)
        except KeyError:
            raise ArchiveError(f"{tar.name}: no {name} in the archive") from None
        if not info.issym():
            return info
        name = posixpath.normpath(posixpath.join(posixpath.dirname(name), info.linkname))
    raise ArchiveError(f"{tar.name}: {name} is a loop of symlinks")


def _read_json(tar: tarfile.TarFile, name: str) -> Any:
    handle = tar.extractfile(_member(tar, name))
    assert handle is not None
    try:
        return json.loads(handle.read())
    except ValueError as err:
        raise ArchiveError(f"{tar.name}: {name} is not JSON: {err}") from None


def _add_oci_layout(store: Store, path: Path, tar: tarfile.TarFile) -> None:
    for name in tar.getnames():
        if name.startswith("blobs/sha256/") and len(name) == 13 + 64:
            info = _member(tar, name)
            media_type = "application/octet-stream"
            if info.size < _CHUNK:  # a manifest or an index says what it is
                handle = tar.extractfile(info)
                assert handle is not None
                with contextlib.suppress(ValueError, AttributeError):  # a config, a layer
                    media_type = json.loads(handle.read()).get("mediaType") or media_type
            store.blobs["sha256:" + name[13:]] = Blob(media_type, info.size, archive=path,
                                                      offset=info.offset_data)
    for desc in _read_json(tar, "index.json").get("manifests", []):
        reference = desc.get("annotations", {}).get("io.containerd.image.name")
        if reference is not None and desc.get("digest") in store.blobs:
            blob = store.blobs[desc["digest"]]
            store.blobs[desc["digest"]] = Blob(desc.get("mediaType", blob.media_type), blob.size,
                                               archive=path, offset=blob.offset)
            store.tag(reference, desc["digest"])


def _add_docker_layout(store: Store, path: Path, tar: tarfile.TarFile) -> None:
    for image in _read_json(tar, "manifest.json"):
        config_info = _member(tar, image["Config"])
        config_file = tar.extractfile(config_info)
        assert config_file is not None
        config_bytes = config_file.read()
        diff_ids = json.loads(config_bytes).get("rootfs", {}).get("diff_ids", [])
        if len(diff_ids) != len(image["Layers"]):
            raise ArchiveError(f"{path}: {image['Config']} lists {len(diff_ids)} layers, "
                               f"manifest.json {len(image['Layers'])}")
        layers = []
        for diff_id, member in zip(diff_ids, image["Layers"], strict=True):
            info = _member(tar, member)
            store.blobs[diff_id] = Blob(OCI_LAYER_TAR, info.size, archive=path,
                                        offset=info.offset_data)
            layers.append({"mediaType": OCI_LAYER_TAR, "digest": diff_id, "size": info.size})
        store.blobs[_digest(config_bytes)] = Blob(OCI_CONFIG, len(config_bytes), config_bytes)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _digest(config_bytes),
                       "size": len(config_bytes)},
            "layers": layers,
        }, separators=(",", ":")).encode()
        store.blobs[_digest(manifest)] = Blob(OCI_MANIFEST, len(manifest), manifest)
        for reference in image.get("RepoTags") or []:
            store.tag(reference, _digest(manifest))


def load(images: Path) -> Store:
    """Every `*.tar` under `images`, indexed by the tags the archives themselves record."""
    store = Store()
    for path in sorted(images.glob("*.tar")):
        _add_archive(store, path)
    store.finish()
    return store


def architectures(archive: Path) -> set[str]:
    """The architectures of the images one archive holds (an index's: those whose blobs it
    holds)."""
    store = Store()
    _add_archive(store, archive)
    try:
        return {p.get("architecture", "") for digests in store.found.values()
                for digest in digests for _, p in store.images(digest)}
    except (ValueError, KeyError, TypeError) as err:
        raise ArchiveError(f"{archive}: a manifest or config is not readable ({err!r})") \
            from None


def _add_archive(store: Store, path: Path) -> None:
    named = store.named
    try:
        with tarfile.open(path, "r:") as tar:  # docker save writes plain tar
            if "index.json" in tar.getnames():
                _add_oci_layout(store, path, tar)
            else:
                _add_docker_layout(store, path, tar)
    except ArchiveError:
        raise
    except (tarfile.TarError, KeyError, TypeError, ValueError) as err:
        reason = str(err).splitlines()[0]
        raise ArchiveError(f"{path}: not an image archive of `docker save` ({reason})") \
            from None
    if store.named == named:
        raise ArchiveError(f"{path}: the archive names no image (save it by name: "
                           "docker save -o FILE NAME:TAG)")


class Handler(SimpleHTTPRequestHandler):
    """/v2/ is the registry; every other path is a file under the bundle (kit_mirror_url)."""

    store: Store
    server_version = "labctl-bundle"

    def do_GET(self) -> None:
        if not self._registry(body=True):
            super().do_GET()

    def do_HEAD(self) -> None:
        if not self._registry(body=False):
            super().do_HEAD()

    def list_directory(self, path: str | Path) -> None:  # type: ignore[override]
        self.send_error(HTTPStatus.NOT_FOUND, "no directory listings")

    def _registry(self, *, body: bool) -> bool:
        url = urlsplit(self.path)
        if url.path in ("/v2", "/v2/"):
            self._send(HTTPStatus.OK, "application/json", b"{}", body=body)
            return True
        if not url.path.startswith("/v2/"):
            return False
        match = _ROUTE.match(url.path)
        registry = parse_qs(url.query).get("ns", [None])[0]
        if match is None:
            self._error(HTTPStatus.NOT_FOUND, "NAME_UNKNOWN", url.path, body=body)
            return True
        if match["kind"] == "manifests":
            digest = self.store.manifest_digest(match["name"], match["ref"], registry)
            code = "MANIFEST_UNKNOWN"
        else:
            digest, code = match["ref"], "BLOB_UNKNOWN"
        blob = self.store.blobs.get(digest or "")
        if blob is None:
            self._error(HTTPStatus.NOT_FOUND, code, f"{match['name']}:{match['ref']}", body=body)
            return True
        self._send_blob(digest or "", blob, body=body)
        return True

    def _headers(self, status: HTTPStatus, media_type: str, size: int,
                 digest: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(size))
        if digest is not None:
            self.send_header("Docker-Content-Digest", digest)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.end_headers()

    def _send(self, status: HTTPStatus, media_type: str, data: bytes, *, body: bool) -> None:
        self._headers(status, media_type, len(data))
        if body:
            self.wfile.write(data)

    def _error(self, status: HTTPStatus, code: str, what: str, *, body: bool) -> None:
        error = {"code": code, "message": f"{what} is not in the bundle"}
        self._send(status, "application/json", json.dumps({"errors": [error]}).encode(), body=body)

    def _send_blob(self, digest: str, blob: Blob, *, body: bool) -> None:
        self._headers(HTTPStatus.OK, blob.media_type, blob.size, digest)
        if not body:
            return
        if blob.data is not None:
            self.wfile.write(blob.data)
            return
        assert blob.archive is not None
        with blob.archive.open("rb") as f:
            f.seek(blob.offset)
            left = blob.size
            while left:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    raise ArchiveError(f"{blob.archive} ended early")
                self.wfile.write(chunk)
                left -= len(chunk)


def server(bundle: Path, store: Store, bind: str, port: int) -> ThreadingHTTPServer:
    """The bundle's files and the registry of `store` (load(bundle / "images")) on one port,
    not yet serving."""
    handler = type("BundleHandler", (Handler,), {"store": store})
    return ThreadingHTTPServer((bind, port), functools.partial(handler, directory=str(bundle)))
