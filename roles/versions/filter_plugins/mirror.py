"""`url | mirrored(kind, kit_mirror_url)`: where a download comes from when the venue serves the
kit's bundle (`make bundle`) over HTTP: <mirror>/<kind>s/<host>/<path>, the layout of the
bundle's folders (labctl/bundle.py, Item.file; a colon, as in pkgs.k8s.io's "core:/stable:",
becomes "_" there, since an exFAT stick refuses colons); the URL itself when no mirror is set."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

KINDS = ("release", "manifest", "key", "repo")
MIRROR = re.compile(r"^https?://[A-Za-z0-9.:\[\]-]+(/\S*)?$")


def mirrored(url: str, kind: str, mirror: str | None = "") -> str:
    if not mirror:
        return url
    if kind not in KINDS:
        raise AnsibleFilterError(f"mirrored: kind {kind!r} is not one of {', '.join(KINDS)}")
    if not MIRROR.match(mirror):
        raise AnsibleFilterError(
            f"kit_mirror_url {mirror!r} is not an http(s) URL; set it to the address the bundle "
            "is served at, such as http://192.168.56.1:8000, or to \"\" for no mirror")
    _scheme, sep, rest = url.partition("://")
    if not sep:
        raise AnsibleFilterError(f"mirrored: {url!r} is not a URL")
    return f"{mirror.rstrip('/')}/{kind}s/{rest.replace(':', '_')}"


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"mirrored": mirrored}
