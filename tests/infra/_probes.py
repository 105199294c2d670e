"""The objects and scripts make verify runs on a cluster (test_cluster_network.py's server pods
and probes, test_cluster_storage.py's rendering of the role's smoke test), kept apart from the
checks so that tests/verify runs the scripts for real (busybox sh, wget and httpd on loopback)
and validates the objects.

Everything runs in the pinned busybox image (nfs_provisioner_smoke_image, one image to mirror
for offline sites) or, on hosts, in the Python that every Ansible host has.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import jinja2
import yaml

NAME = "verify-net"
SMOKE_TEMPLATE = (
    Path(__file__).resolve().parents[2] / "roles/nfs_provisioner/templates/nfs-smoke.yaml.j2"
)
PORT = 8080
# One line per target: "<label> <exit code> <first line of output>" (_verdicts.probes).
PROBE = 'p() { l=$1; shift; o=$("$@" 2>&1); r=$?; echo "$l $r $(echo "$o" | head -n 1)"; }; '
# The same from a host: argv is label=url pairs.
HOST_PROBE = (
    "python3 -c 'import sys,urllib.request as u\n"
    "for a in sys.argv[1:]:\n"
    ' l,_,url=a.partition("=")\n'
    " try: print(l,0,u.urlopen(url,timeout=3).read().decode().strip())\n"
    " except Exception as e: print(l,1,str(e).splitlines()[0])' "
)
# Go's HTTPS server (net/http server.go) answers a plain-HTTP request with this status: proof
# that the TCP connection to kubernetes:443 went through, with any busybox build's wget.
HTTP_TO_HTTPS = "400 Bad Request"


def server_script(port: int = PORT) -> str:
    """Serve the node's name ($NODE) over HTTP, and say so in the pod's log."""
    return (
        'mkdir -p /tmp/www && echo "$NODE" > /tmp/www/index.html && echo "serving on $NODE" '
        f"&& exec httpd -f -p {port} -h /tmp/www"
    )


def pod_calls(servers: dict[str, dict[str, str]], service: str, api: str, port: int = PORT) -> str:
    """Probe calls from a pod: every server pod, the Service (host[:port]), the API (host:port)."""
    get = "timeout 5 wget -q -O-"  # busybox's own -T crashes some builds (Debian 12's 1.35)
    calls = [f"p pod@{node} {get} http://{s['ip']}:{port}/" for node, s in servers.items()]
    calls.append(f"p service {get} http://{service}/")
    reached = f"{get} http://{api}/ 2>&1 | grep -q '{HTTP_TO_HTTPS}'"
    calls.append(f'p kubernetes:443 sh -c "{reached}"')
    return "; ".join(calls)


def host_targets(servers: dict[str, dict[str, str]], port: int = PORT) -> str:
    """HOST_PROBE's arguments: every server pod."""
    return " ".join(f"pod@{node}=http://{s['ip']}:{port}/" for node, s in servers.items())


def server_objects(namespace: str, image: str) -> list[dict[str, Any]]:
    """A DaemonSet of HTTP servers on every node (tolerating every taint) and its Service."""
    labels = {"app.kubernetes.io/name": NAME}
    container = {
        "name": "http",
        "image": image,
        "command": ["sh", "-c", server_script()],
        "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "ports": [{"containerPort": PORT}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    pod_spec = {
        "tolerations": [{"operator": "Exists"}],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    }
    meta = {"name": NAME, "namespace": namespace, "labels": labels}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": PORT}]},
        },
    ]


def smoke_objects(groups: dict[str, list[str]], namespace: str, image: str) -> list[Any]:
    """The nfs_provisioner role's smoke test (claim, writer, reader), rendered as the role does
    but into `namespace` with a fresh token; groups: kube_node and kube_control_plane hosts."""
    text = jinja2.Template(SMOKE_TEMPLATE.read_text(), undefined=jinja2.StrictUndefined).render(
        ansible_managed="rendered by make verify",
        nfs_provisioner_smoke_namespace=namespace,
        nfs_provisioner_smoke_image=image,
        _nfs_provisioner_token=secrets.randbelow(10**9),
        groups=groups,
    )
    return [doc for doc in yaml.safe_load_all(text) if doc]
