"""A byte-for-byte partial copy of a flat apt repository (`deb URL /`, as pkgs.k8s.io's), for the
venue bundle: apt on a node then reads the copy as it would the original, and checks it against
the repository's own signing key.

What is copied: the signed index (InRelease; Release, Release.gpg and Release.key where the
repository has them: pkgs.k8s.io has all four, NVIDIA's only InRelease), every package index
that it lists (checked against its SHA256, or SHA512 where that is all it lists, as NVIDIA's),
and the packages a role installs, with what they depend on from the same repository, for every
architecture of the kit (each checked against the index's hash). A pinned package
(`kubeadm=1.35.2-*`, apt's own spec) keeps only the matching versions; an unpinned one keeps
all, since apt picks the newest.
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import lzma
import re
import tarfile
from pathlib import Path

from labctl.download import digest, download

SIGNED = ("InRelease", "Release", "Release.gpg", "Release.key")
ARCHES = ("amd64", "arm64", "all")
HASHES = ("SHA256", "SHA512")  # what apt itself trusts; the first listed is checked
_DEPENDS = ("Pre-Depends", "Depends")


class MirrorError(RuntimeError):
    """The repository cannot be copied as it is (missing index, wrong checksum)."""


def _release_text(signed: str) -> str:
    """The Release part of an InRelease (OpenPGP cleartext signature) or of a Release file."""
    if "-----BEGIN PGP SIGNED MESSAGE-----" not in signed:
        return signed
    body = signed.split("\n\n", 1)[1]  # after the armor headers ("Hash: ...")
    return body.split("-----BEGIN PGP SIGNATURE-----", 1)[0]


def indexes(release: str) -> dict[str, tuple[str, str]]:
    """The files Release lists: path -> (HASH, digest), from its first section in HASHES."""
    sections: dict[str, dict[str, tuple[str, str]]] = {}
    current: dict[str, tuple[str, str]] | None = None
    for line in release.splitlines():
        if not line.startswith(" "):
            name = line.strip().rstrip(":")
            current = sections.setdefault(name, {}) if name in HASHES else None
            continue
        if current is not None:
            digest, _size, path = line.split()
            current[path] = (name, digest)
    return next((sections[h] for h in HASHES if sections.get(h)), {})


def stanzas(packages: str) -> list[dict[str, str]]:
    """A Packages file's paragraphs as dicts (continuation lines joined)."""
    found = []
    for block in re.split(r"\n\s*\n", packages.strip()):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if fields:
            found.append(fields)
    return found


def select(entries: list[dict[str, str]], wanted: tuple[str, ...]) -> list[dict[str, str]]:
    """The entries apt may install for `wanted` (NAME or NAME=VERSION-GLOB) on the kit's
    architectures, and their dependencies from the same repository, unpinned."""
    here = [e for e in entries if e.get("Architecture") in ARCHES]
    names = {e["Package"] for e in here}
    pins: dict[str, str | None] = {}
    for spec in wanted:
        name, _, version = spec.partition("=")
        pins[name] = version or None
    chosen: list[dict[str, str]] = []
    todo = list(pins)
    while todo:
        name = todo.pop()
        pin = pins[name]
        if name not in names:
            raise MirrorError(f"the repository has no package {name}")
        matching = [e for e in here if e["Package"] == name
                    and (pin is None or fnmatch.fnmatch(e["Version"], pin))]
        if not matching:
            raise MirrorError(f"the repository has no {name} {pin}")
        chosen += [e for e in matching if e not in chosen]
        for entry in matching:
            for field in _DEPENDS:
                for alternative in re.split(r"[,|]", entry.get(field, "")):
                    dep = alternative.split("(")[0].split(":")[0].strip()
                    if dep in names and dep not in pins:
                        pins[dep] = None
                        todo.append(dep)
    return chosen


def _gunzip(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def _unxz(path: Path) -> bytes:
    return lzma.decompress(path.read_bytes())


def _packages_text(repo: Path, listed: dict[str, tuple[str, str]]) -> str:
    for name, read in (("Packages", Path.read_bytes), ("Packages.gz", _gunzip),
                       ("Packages.xz", _unxz)):
        if name in listed and (repo / name).is_file():
            return read(repo / name).decode()
    raise MirrorError("the repository's Release lists no Packages index that it serves, with a "
                      f"{' or '.join(HASHES)} hash")


def deb_file(deb: Path, path: str) -> bytes:
    """One file of a .deb (an ar archive whose data.tar.gz or .xz holds the files)."""
    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise MirrorError(f"{deb.name}: not a .deb")
    at = 8
    while at + 60 <= len(data):
        name, size = data[at:at + 16].decode().strip(), int(data[at + 48:at + 58])
        body = data[at + 60:at + 60 + size]
        if name.rstrip("/") in ("data.tar.gz", "data.tar.xz"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                for member in tar.getmembers():
                    if member.name.lstrip("./") == path.lstrip("/"):
                        handle = tar.extractfile(member)
                        if handle is not None:
                            return handle.read()
            raise MirrorError(f"{deb.name} has no {path}")
        at += 60 + size + size % 2
    raise MirrorError(f"{deb.name}: no data.tar.gz or data.tar.xz member")


def fetch(url: str, wanted: tuple[str, ...], dest: Path) -> list[Path]:
    """Copy the flat repository at `url` (ending in /) into `dest`; the files written."""
    files = [dest / name for name in SIGNED
             if download(url + name, dest / name, missing_ok=True)]
    signed = dest / "InRelease" if (dest / "InRelease").is_file() else dest / "Release"
    if not signed.is_file():
        raise MirrorError(f"{url}: no InRelease or Release: not a flat apt repository")
    listed = indexes(_release_text(signed.read_text()))
    for path, expected in listed.items():
        if ".." in path.split("/"):
            raise MirrorError(f"{url}: Release lists a file outside the repository: {path}")
        if download(url + path, dest / path, expected, missing_ok=True):
            files.append(dest / path)
    for entry in select(stanzas(_packages_text(dest, listed)), wanted):
        if ".." in entry["Filename"].split("/"):
            raise MirrorError(f"{url}: a Filename outside the repository: {entry['Filename']}")
        target = dest / entry["Filename"]
        source = url + entry["Filename"].removeprefix("./")
        expected = next(((h, entry[h]) for h in HASHES if h in entry), None)
        if expected is None:
            raise MirrorError(f"{source}: the index gives no {' or '.join(HASHES)} hash")
        kept = target.is_file() and digest(target, expected[0]) == expected[1]  # an earlier run's
        if not kept and not download(source, target, expected, missing_ok=True):
            raise MirrorError(f"{source}: not found, though the index lists it")
        files.append(target)
    return sorted(set(files))
