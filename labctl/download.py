"""One file over HTTP into the venue bundle: never a half file under its final name, checked
against the hash an index gives when there is one, readable by whoever serves the bundle."""

from __future__ import annotations

import hashlib
import http.client
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

ABSENT = (403, 404)  # pkgs.k8s.io's CDN answers 403 for some missing files


class DownloadError(RuntimeError):
    """A cut connection, a timeout, or content that does not match its hash."""


def digest(path: Path, algorithm: str = "sha256") -> str:
    """The file's hex digest, read in blocks."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, algorithm.lower()).hexdigest()


def download(url: str, dest: Path, expected: tuple[str, str] | None = None, *,
             missing_ok: bool = False) -> bool:
    """`url` into `dest`, checked against `expected` (HASH, hex digest) when given. With
    `missing_ok`, False when the server has no such file (ABSENT); otherwise its HTTPError."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    hashed = hashlib.new((expected or ("sha256", ""))[0].lower())
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as part:
        try:
            with urllib.request.urlopen(url, timeout=60) as reply:
                for block in iter(lambda: reply.read(1 << 20), b""):
                    part.write(block)
                    hashed.update(block)
        except urllib.error.HTTPError as err:
            Path(part.name).unlink()
            if missing_ok and err.code in ABSENT:
                return False
            raise
        except (OSError, http.client.HTTPException) as err:
            Path(part.name).unlink()
            raise DownloadError(f"{url}: {err!r}") from None
    if expected is not None and hashed.hexdigest() != expected[1]:
        Path(part.name).unlink()
        raise DownloadError(f"{url}: {expected[0]} {hashed.hexdigest()}, the index says "
                            f"{expected[1]}")
    Path(part.name).chmod(0o644)
    Path(part.name).replace(dest)
    return True
