"""Patch metrics-server's release manifest in memory: set the container's flags."""

from __future__ import annotations

import copy
from typing import Any

from ansible.errors import AnsibleFilterError


def _flag(arg: str) -> str:
    return arg.split("=", 1)[0]


def metrics_server_patch(docs: list[dict[str, Any]], args: list[str]) -> list[dict[str, Any]]:
    """Return the manifest with `args` set on the metrics-server container (same flag replaced)."""
    out = [copy.deepcopy(d) for d in docs if d]
    deployments = [
        d
        for d in out
        if d.get("kind") == "Deployment" and d["metadata"]["name"] == "metrics-server"
    ]
    if len(deployments) != 1:
        raise AnsibleFilterError("metrics-server manifest: expected one Deployment metrics-server")
    containers = deployments[0]["spec"]["template"]["spec"]["containers"]
    target = [c for c in containers if c["name"] == "metrics-server"]
    if len(target) != 1:
        raise AnsibleFilterError("metrics-server manifest: no container named metrics-server")
    wanted = {_flag(a) for a in args}
    current = target[0].get("args", [])
    target[0]["args"] = [a for a in current if _flag(a) not in wanted] + list(args)
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"metrics_server_patch": metrics_server_patch}
