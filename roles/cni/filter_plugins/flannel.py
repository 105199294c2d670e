"""cni_flannel_patch: fit flannel's upstream manifest to this cluster, in memory.

The manifest is fetched from the pinned release at provisioning time (never stored in the
repository); this filter changes exactly two things in it:

- the `kube-flannel-cfg` ConfigMap's net-conf.json takes the given keys (the pod network, the
  backend), keeping upstream's other settings;
- the `kube-flannel` container gets `--iface=$(FLANNEL_NODE_IP)`, with FLANNEL_NODE_IP taken
  from the pod's status.hostIP: the node's InternalIP, which kubelet registers from --node-ip.
  flannel then uses the interface holding the private address, not the default route's.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ansible.errors import AnsibleFilterError

NODE_IP_ENV = "FLANNEL_NODE_IP"
IFACE_ARG = f"--iface=$({NODE_IP_ENV})"


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
            return doc
    raise AnsibleFilterError(
        f"cni_flannel_patch: no {kind} {name!r} in the flannel manifest; "
        "its layout changed, check cni_flannel_version"
    )


def cni_flannel_patch(docs: list[Any], net_conf: dict[str, Any]) -> list[dict[str, Any]]:
    """Return a patched copy of the manifest's documents (empty documents dropped)."""
    patched: list[dict[str, Any]] = [copy.deepcopy(d) for d in docs if d]

    config = _find(patched, "ConfigMap", "kube-flannel-cfg")
    current = json.loads(config["data"]["net-conf.json"])
    config["data"]["net-conf.json"] = json.dumps({**current, **net_conf}, indent=2)

    daemonset = _find(patched, "DaemonSet", "kube-flannel-ds")
    containers = daemonset["spec"]["template"]["spec"]["containers"]
    flannel = next((c for c in containers if c.get("name") == "kube-flannel"), None)
    if flannel is None:
        raise AnsibleFilterError(
            "cni_flannel_patch: no kube-flannel container in DaemonSet kube-flannel-ds; "
            "its layout changed, check cni_flannel_version"
        )
    env = [e for e in flannel.get("env", []) if e.get("name") != NODE_IP_ENV]
    env.append({"name": NODE_IP_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}})
    flannel["env"] = env
    args = [a for a in flannel.get("args", []) if not a.startswith("--iface")]
    flannel["args"] = [*args, IFACE_ARG]
    return patched


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"cni_flannel_patch": cni_flannel_patch}
