"""The kit's pinned versions, read from versions.yml at the repository root: the one place each
is written. The roles get the same file as defaults (roles/versions), the Vagrantfile its
kube_version and boxes, the tests everything through here."""

from __future__ import annotations

import functools
from typing import Any

from labctl.errors import UsageError
from labctl.labs import REPO

FILE = REPO / "versions.yml"


@functools.cache
def pins() -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(FILE.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read the kit's versions from {FILE} ({exc}): restore it with "
                         "`git checkout versions.yml`") from None
    if not isinstance(data, dict):
        raise UsageError(f"{FILE} must hold a mapping of pins: restore it with "
                         "`git checkout versions.yml`")
    return data


def get(name: str) -> str:
    value = pins().get(name)
    if not isinstance(value, str) or not value:
        raise UsageError(f"{FILE} has no {name} (a quoted version string): restore it with "
                         "`git checkout versions.yml`")
    return value


def flat() -> list[tuple[str, str]]:
    """Every pinned value and its name, e.g. ("etcd_release_sha256.amd64", "ffe8...")."""
    out: list[tuple[str, str]] = []

    def walk(name: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{name}.{key}", item)
        else:
            out.append((name, str(value)))

    for name, value in pins().items():
        walk(name, value)
    return out
