"""Stand-in flat apt repositories for the role tests: empty .deb packages (holding the files
given), their Packages index and, when signed, a Release clear-signed by a throw-away key
(InRelease). Two layouts, as the real ones: pkgs.k8s.io's (Release, InRelease and the key as
Release.key, SHA256, Packages.gz) and NVIDIA's (InRelease alone, SHA512 only, Packages.xz, the
key published elsewhere)."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Deb:
    name: str
    version: str = "1.0"
    arch: str = "all"
    depends: str = ""
    files: dict[str, str] = field(default_factory=dict)  # path -> text (a "#!" script: 0755)

    @property
    def control(self) -> str:
        return (f"Package: {self.name}\nVersion: {self.version}\nArchitecture: {self.arch}\n"
                "Maintainer: stand-in <kit@example.invalid>\n"
                + (f"Depends: {self.depends}\n" if self.depends else ""))

    def filename(self, pool: str) -> str:
        """Its path in the repository: in `pool` ("{arch}" allowed) or at the top."""
        folder = pool.format(arch=self.arch) if pool else "."
        return f"{folder}/{self.name}_{self.version}_{self.arch}.deb"


def build_repo(repo: Path, debs: list[Deb], *, pool: str = "", signed: bool = False,
               like_nvidia: bool = False, key: Path | None = None) -> Path:
    """The repository in `repo` (created); each package under `pool`. Signed, its public key
    goes to `key` (default repo/Release.key)."""
    repo.mkdir(parents=True, exist_ok=True)
    index = []
    with tempfile.TemporaryDirectory(prefix="debs") as scratch:
        for deb in debs:
            index.append(_package(repo, deb, pool, Path(scratch)))
    packages = "\n".join(index).encode()
    (repo / "Packages").write_bytes(packages)
    compressed = repo / ("Packages.xz" if like_nvidia else "Packages.gz")
    compressed.write_bytes(lzma.compress(packages) if like_nvidia else gzip.compress(packages))
    if signed:
        hash_name = "SHA512" if like_nvidia else "SHA256"
        _sign(repo, [repo / "Packages", compressed], hash_name, key or repo / "Release.key")
        if like_nvidia:
            (repo / "Release").unlink()
    return repo


def _package(repo: Path, deb: Deb, pool: str, scratch: Path) -> str:
    """Build `deb` into the repository; its Packages stanza."""
    tree = scratch / f"{deb.name}-{deb.version}-{deb.arch}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(deb.control + "Description: stand-in\n")
    for path, text in deb.files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(text)
        (tree / path).chmod(0o755 if text.startswith("#!") else 0o644)
    target = repo / deb.filename(pool)
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", tree, target], check=True,
                   capture_output=True)
    data = target.read_bytes()
    return (deb.control + f"Filename: {deb.filename(pool)}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\nDescription: stand-in\n")


def _sign(repo: Path, listed: list[Path], hash_name: str, key: Path) -> None:
    sums = "".join(f" {hashlib.new(hash_name, p.read_bytes()).hexdigest()} {p.stat().st_size}"
                   f" {p.name}\n" for p in listed)
    (repo / "Release").write_text("Origin: stand-in\nLabel: stand-in\nArchitectures: amd64 arm64\n"
                                  f"Date: Thu, 01 Jan 2026 00:00:00 UTC\n{hash_name}:\n" + sums)
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="gpg") as home:  # short: agent socket
        gpg = ["gpg", "--homedir", home, "--batch", "--yes", "--passphrase", ""]
        for args in (["--quick-gen-key", "stand-in <kit@example.invalid>", "ed25519", "sign",
                      "never"],
                     ["--armor", "--output", str(key), "--export"],
                     ["--clearsign", "--output", str(repo / "InRelease"), str(repo / "Release")]):
            subprocess.run([*gpg, *args], check=True, capture_output=True)
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"],
                       capture_output=True, check=False)
