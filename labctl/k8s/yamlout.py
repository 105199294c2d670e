"""Manifests as YAML documents: program files as readable block text, keys in given order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from labctl.k8s.optional import need


def dump(docs: Iterable[dict[str, Any]]) -> str:
    yaml = need("yaml")

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # no &id001 anchors: plain manifests
            return True

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump_all(list(docs), Dumper=Dumper, sort_keys=False, default_flow_style=False,
                         width=100, explicit_start=True)
