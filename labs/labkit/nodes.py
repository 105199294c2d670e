"""Evidence from a node itself, for the checks of cluster labs: a short-lived pod pinned to the
node reads host files read-only and prints one JSON line, then is deleted. It is what
`kubectl debug node/NAME --profile=sysadmin` makes by hand: the host's `/` at /host, the
host's network namespace, root, every taint tolerated.

It runs in the `default` namespace, as `kubectl debug node` does: the labs' namespaces enforce
Pod Security `restricted`, which forbids hostPath. So only an administrator's kubeconfig may
probe, which is what reading a node's audit log or cgroups takes anyway.

A request maps a name to one question:
    ["read", PATH]          the text of the host file (first 64 KiB), or null when it is absent
    ["grep", PATH, NEEDLE]  the host file's lines that contain NEEDLE (at most 20)
    ["route", IP]           the interface of the node's route to IP (longest prefix), or null
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from labkit.checks import Failed

NAMESPACE = "default"
CONTAINER = "probe"
# Run inside the pod by the image's python3: argv[1] the questions, argv[2] where the host's `/`
# is mounted, argv[3] procfs (with hostNetwork its net/route is the node's routing table).
SCRIPT = r"""
import ipaddress, json, os, socket, struct, sys

asks, root, proc = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]


def host(path):
    return os.path.join(root, path.lstrip("/"))


def read(path):
    try:
        with open(host(path), errors="replace") as f:
            return f.read(65536)
    except OSError:
        return None


def grep(path, needle):
    try:
        with open(host(path), errors="replace") as f:
            return [line.rstrip("\n") for line in f if needle in line][:20]
    except OSError:
        return None


def route(ip):
    best = None
    with open(os.path.join(proc, "net/route")) as f:
        for line in f.read().splitlines()[1:]:
            iface, dest, _, _, _, _, _, mask = line.split()[:8]
            net = ipaddress.ip_network(
                (socket.inet_ntoa(struct.pack("<L", int(dest, 16))),
                 socket.inet_ntoa(struct.pack("<L", int(mask, 16)))), strict=False)
            if ipaddress.ip_address(ip) in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, iface)
    return best and best[1]


ops = {"read": read, "grep": grep, "route": route}
print(json.dumps({name: ops[op](*args) for name, (op, *args) in asks.items()}))
"""


def pod(node: str, image: str, asks: dict[str, list[str]]) -> dict[str, Any]:
    name = f"labctl-probe-{secrets.token_hex(3)}-{node}"[:63].rstrip("-.")
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/name": "labctl-probe"}},
        "spec": {
            "nodeName": node,  # no scheduler: the node asked about, even a tainted one
            "hostNetwork": True,
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": CONTAINER, "image": image,
                "command": ["python3", "-c", SCRIPT, json.dumps(asks), "/host", "/proc"],
                "securityContext": {"runAsUser": 0, "readOnlyRootFilesystem": True},
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                              "limits": {"cpu": "200m", "memory": "128Mi"}},
                "volumeMounts": [{"name": "host", "mountPath": "/host", "readOnly": True}],
            }],
            "volumes": [{"name": "host", "hostPath": {"path": "/", "type": "Directory"}}],
        },
    }


def probe(api: Any, node: str, image: str, asks: dict[str, list[str]],
          timeout_s: float = 120.0, poll_s: float = 1.0) -> dict[str, Any]:
    """The answers to `asks` on `node`; Failed with the pod's own reason when it cannot run."""
    doc = pod(node, image, asks)
    name = doc["metadata"]["name"]
    hint = (f"`kubectl -n {NAMESPACE} describe pod {name}` while it runs; probing a node needs an "
            "administrator's kubeconfig")
    api.create(doc)
    try:
        deadline = time.monotonic() + timeout_s
        phase = "Pending"
        while time.monotonic() < deadline:
            status = (api.read("Pod", name, NAMESPACE) or {}).get("status", {})
            phase = status.get("phase", "Pending")
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(poll_s)
        log = api.log(name, NAMESPACE, CONTAINER)
        if phase != "Succeeded":
            last = (log.strip().splitlines() or [f"still {phase} after {timeout_s:.0f} s"])[-1]
            raise Failed(f"cannot read node {node}: {last}", hint)
        return dict(json.loads(log.strip().splitlines()[-1]))
    finally:
        api.delete("Pod", name, NAMESPACE, grace_s=0)
