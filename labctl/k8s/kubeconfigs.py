"""An attendee's kubeconfig: the cluster as the instructor's kubeconfig names it (its CA), a
ServiceAccount token from a TokenRequest, and a context whose namespace is the attendee's, so
`kubectl` and `labctl` work there without `-n`."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from labctl.errors import UsageError
from labctl.k8s.optional import need


def admin_cluster(path: Path) -> tuple[str, str]:
    """(server, base64 CA data) of the current context's cluster in the instructor's kubeconfig."""
    yaml = need("yaml")
    try:
        conf = yaml.safe_load(path.read_text()) or {}
        context = next(c["context"] for c in conf["contexts"]
                       if c["name"] == conf["current-context"])
        cluster = next(c["cluster"] for c in conf["clusters"] if c["name"] == context["cluster"])
    except (OSError, KeyError, StopIteration, TypeError, yaml.YAMLError):
        raise UsageError(f"{path} has no usable current context with a cluster: pass the "
                         "instructor's kubeconfig with --kubeconfig") from None
    ca = cluster.get("certificate-authority-data")
    if not ca and cluster.get("certificate-authority"):
        ca_path = (path.parent / cluster["certificate-authority"]).resolve()
        ca = base64.b64encode(ca_path.read_bytes()).decode()
    if not ca:  # never hand out a kubeconfig that skips TLS verification
        raise UsageError(f"{path}: the cluster entry has no certificate authority to pass on")
    return str(cluster["server"]), str(ca)


def attendee_config(name: str, namespace: str, server: str, ca_data: str,
                    token: str) -> dict[str, Any]:
    user = f"{name}@workshop"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "workshop", "cluster": {
            "server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "workshop", "context": {
            "cluster": "workshop", "user": user, "namespace": namespace}}],
        "current-context": "workshop",
    }


def write(path: Path, config: dict[str, Any]) -> None:
    """Owner-only from the first byte: it holds a bearer token."""
    yaml = need("yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.replace(path)


def context_namespace(path: Path | None) -> str | None:
    """The namespace of the kubeconfig's current context, when it names one."""
    if path is None:
        return None
    yaml = need("yaml")
    try:
        conf = yaml.safe_load(path.read_text()) or {}
        context = next(c["context"] for c in conf.get("contexts") or []
                       if c["name"] == conf.get("current-context"))
    except (OSError, StopIteration, TypeError, KeyError, yaml.YAMLError):
        return None
    namespace = context.get("namespace") if isinstance(context, dict) else None
    return str(namespace) if namespace else None
