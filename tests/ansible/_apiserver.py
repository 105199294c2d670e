"""A Kubernetes API server stand-in over plain HTTP, for running the roles' real
kubernetes.core and kubectl calls here.

It speaks the REST shapes those clients use (discovery, get/list/create/patch/replace/delete,
the CSR approval subresource) and settles each object the way the controller named in STATUS
does on a real cluster, once: a Deployment becomes Available, a Namespace Active, a Pod of a
smoke test Succeeded. Objects whose kind has no controller-set conditions (Namespace,
ServiceAccount, RBAC, StorageClass, RuntimeClass, ConfigMap, ...) never get any, as on a real
API server: a wait for a condition on them never ends. It is a mock: it proves how the roles
call the API (arguments, wait conditions, which objects, in which order), not that a real
cluster then works.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from labctl import versions

Obj = dict[str, Any]

# (group, version, kind, plural, namespaced) of every kind the roles touch.
RESOURCES = [
    ("", "v1", "Namespace", "namespaces", False),
    ("", "v1", "Node", "nodes", False),
    ("", "v1", "ServiceAccount", "serviceaccounts", True),
    ("", "v1", "ConfigMap", "configmaps", True),
    ("", "v1", "Secret", "secrets", True),
    ("", "v1", "Service", "services", True),
    ("", "v1", "Pod", "pods", True),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True),
    ("apps", "v1", "Deployment", "deployments", True),
    ("apps", "v1", "DaemonSet", "daemonsets", True),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    ("storage.k8s.io", "v1", "StorageClass", "storageclasses", False),
    ("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", False),
    ("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests",
     False),
    ("apiregistration.k8s.io", "v1", "APIService", "apiservices", False),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
     False),
]
SUBRESOURCES = {"certificatesigningrequests": ["approval", "status"], "pods": ["log", "status"]}


def _true(*types: str) -> list[Obj]:
    return [{"type": t, "status": "True", "reason": "StandIn"} for t in types]


def _deployment(obj: Obj) -> Obj:
    n = obj["spec"].get("replicas", 1)
    return {"observedGeneration": obj["metadata"]["generation"], "replicas": n,
            "availableReplicas": n, "readyReplicas": n, "updatedReplicas": n,
            "conditions": _true("Available", "Progressing")}


def _daemonset(obj: Obj) -> Obj:
    return {"observedGeneration": obj["metadata"]["generation"], "desiredNumberScheduled": 1,
            "currentNumberScheduled": 1, "updatedNumberScheduled": 1, "numberReady": 1,
            "numberAvailable": 1}


# Pods (by name) whose command fails; every other pod's succeeds.
FAILING_PODS: set[str] = set()


def _pod(obj: Obj) -> Obj:
    # A pod of these roles runs a short command and ends: kubelet reports phase Succeeded or
    # Failed, and Ready False with reason PodCompleted or PodFailed.
    failed = obj["metadata"]["name"] in FAILING_PODS
    return {"phase": "Failed" if failed else "Succeeded",
            "conditions": [{"type": "Ready", "status": "False",
                            "reason": "PodFailed" if failed else "PodCompleted"}],
            "containerStatuses": [{"name": c["name"], "ready": False}
                                  for c in obj["spec"]["containers"]]}


# What the kind's controller writes into status on a real cluster (the parts the roles read).
STATUS: dict[str, Callable[[Obj], Obj]] = {
    "Namespace": lambda o: {"phase": "Active"},
    "Deployment": _deployment,
    "DaemonSet": _daemonset,
    "Pod": _pod,
    "PersistentVolumeClaim": lambda o: {"phase": "Bound"},
    "CustomResourceDefinition": lambda o: {"conditions": _true("NamesAccepted", "Established")},
    "APIService": lambda o: {"conditions": _true("Available")},
}


def _merge(base: Any, patch: Any) -> Any:
    """RFC 7386 merge patch (strategic merge differs only in list handling, unused here)."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(base.get(key), value)
    return out


class ApiServer:
    """Serve on 127.0.0.1; `objects` holds what exists, `log` every mutating request."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}  # (plural, namespace, name)
        self.log: list[tuple[str, str]] = []  # (verb, path)
        self.lock = threading.Lock()
        self.rv = 1
        # Called with each object a request changed (what a kubelet or controller would see).
        self.on_update: Callable[[Obj], None] = lambda obj: None
        self.by_plural = {r[3]: r for r in RESOURCES}
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> ApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "standin",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "admin", "user": {"token": "standin"}}],
            "contexts": [{"name": "standin",
                          "context": {"cluster": "standin", "user": "admin"}}],
        }))
        return path

    def add(self, obj: Obj) -> Obj:
        """Put an object in place as if another component had made it (a node, a CSR)."""
        plural = next(r[3] for r in RESOURCES if r[2] == obj["kind"])
        with self.lock:
            return self._store(plural, obj["metadata"].get("namespace", ""), obj)

    def get(self, kind: str, name: str, namespace: str = "") -> Obj | None:
        plural = next(r[3] for r in RESOURCES if r[2] == kind)
        return self.objects.get((plural, namespace, name))

    def kinds(self, verb: str) -> list[str]:
        """`verb` requests in order, as "PLURAL/NAME" ("POST" names the created object)."""
        return [path for v, path in self.log if v == verb]

    def _store(self, plural: str, namespace: str, obj: Obj) -> Obj:
        group, version, kind, _, _ = self.by_plural[plural]
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", "2026-12-01T00:00:00Z")
        if namespace:
            meta["namespace"] = namespace
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        obj["apiVersion"] = f"{group}/{version}" if group else version
        obj["kind"] = kind
        if kind in STATUS:
            obj["status"] = _merge(obj.get("status", {}), STATUS[kind](obj))
        self.objects[(plural, namespace, meta["name"])] = obj
        return obj


# /api/v1[/namespaces/NS]/PLURAL[/NAME[/SUB]] and /apis/G/V[/namespaces/NS]/PLURAL[/NAME[/SUB]]
_PATH = re.compile(
    r"^/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<v>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+)(?=/))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)


class _Handler(BaseHTTPRequestHandler):
    api: ApiServer

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, code: int, body: Obj) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "reason": reason, "message": message, "code": code})

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _decision(self) -> list[Obj]:
        """The conditions of an approval request. kubectl sends built-in kinds as protobuf; its
        condition types are plain strings in that encoding, so they are looked up as bytes."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "protobuf" not in (self.headers.get("Content-Type") or ""):
            return json.loads(raw).get("status", {}).get("conditions", [])
        return [{"type": t, "status": "True"} for t in ("Approved", "Denied")
                if t.encode() in raw]

    def _discovery(self, path: str) -> Obj | None:
        if path == "/version":
            kube = versions.get("kube_version")
            return {"major": "1", "minor": kube.split(".")[1], "gitVersion": f"v{kube}"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"]}
        groups = sorted({(g, v) for g, v, *_ in RESOURCES if g})
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                 "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
                for g, v in groups]}
        for g, v in [("", "v1"), *groups]:
            if path == (f"/apis/{g}/{v}" if g else "/api/v1"):
                resources = []
                for rg, rv, kind, plural, namespaced in RESOURCES:
                    if (rg, rv) != (g, v):
                        continue
                    resources.append({"name": plural, "kind": kind, "namespaced": namespaced,
                                      "singularName": kind.lower(), "verbs": [
                                          "create", "delete", "get", "list", "patch",
                                          "update", "watch"]})
                    resources += [{"name": f"{plural}/{s}", "kind": kind,
                                   "namespaced": namespaced, "verbs": ["get", "update"]}
                                  for s in SUBRESOURCES.get(plural, [])]
                return {"kind": "APIResourceList", "apiVersion": "v1",
                        "groupVersion": f"{g}/{v}" if g else "v1", "resources": resources}
        return None

    def _route(self, verb: str) -> None:
        url = urlsplit(self.path)
        found = self._discovery(url.path) if verb == "GET" else None
        if found is not None:
            return self._send(200, found)
        m = _PATH.match(url.path)
        if not m or m["plural"] not in self.api.by_plural:
            return self._status(404, "NotFound", f"the server could not find {url.path}")
        api, plural, ns, name = self.api, m["plural"], m["ns"] or "", m["name"]
        query = parse_qs(url.query)
        with api.lock:
            dry_run = "All" in query.get("dryRun", [])
            key = (plural, ns, name or "")
            if verb == "GET" and not name:
                return self._send(200, self._list(plural, ns, query))
            if verb == "POST":
                obj = self._body()
                key = (plural, ns, obj["metadata"]["name"])
                if key in api.objects:
                    return self._status(409, "AlreadyExists", f"{plural} exists")
                if dry_run:
                    return self._send(201, obj)
                api.log.append((verb, f"{plural}/{key[2]}"))
                return self._send(201, api._store(plural, ns, obj))
            if key not in api.objects:
                return self._status(404, "NotFound", f'{plural} "{name}" not found')
            current = api.objects[key]
            if verb == "GET":
                return self._send(200, current)
            if not dry_run:
                api.log.append((verb, f"{plural}/{name}"))
            if verb == "DELETE":
                if not dry_run:
                    del api.objects[key]
                return self._send(200, current)
            if verb == "PUT" and m["sub"] == "approval":
                current["status"] = {"conditions": self._decision()}
                api.on_update(current)
                return self._send(200, current)
            body = self._body()
            new = body if verb == "PUT" else _merge(current, body)
            if dry_run:
                return self._send(200, new)
            if new.get("spec") != current.get("spec"):
                new["metadata"]["generation"] = current["metadata"]["generation"] + 1
            return self._send(200, api._store(plural, ns, new))

    def _list(self, plural: str, ns: str, query: dict[str, list[str]]) -> Obj:
        selector = dict(p.split("=", 1) for p in ",".join(query.get("labelSelector", [])).split(",")
                        if "=" in p)
        items = [o for (p, n, _), o in self.api.objects.items()
                 if p == plural and (not ns or n == ns)
                 and all(o["metadata"].get("labels", {}).get(k) == v
                         for k, v in selector.items())]
        kind = self.api.by_plural[plural][2]
        return {"kind": f"{kind}List", "apiVersion": "v1", "items": items,
                "metadata": {"resourceVersion": str(self.api.rv)}}

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_DELETE(self) -> None:
        self._route("DELETE")
