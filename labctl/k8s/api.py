"""The few Kubernetes API calls labctl makes, through the official `kubernetes` client.

Objects go in and come out as plain dicts (the manifests' own shape), so the rest of labctl never
sees the client's model classes and tests can stand a fake cluster in for this class. Every
client error becomes a ClusterError: one line that names what was refused and what to do.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labctl.errors import UsageError
from labctl.labs import REPO

REQUEST_TIMEOUT_S = 10
LOG_IDLE_S = 60  # a follow stream silent this long is opened again (a dead connection hangs)
LOG_RETRY_S = 120.0  # how long a broken log stream is followed again before giving up
LOG_RETRY_PAUSE_S = 1.0
# The client this code is written for: 37 is the first with pydantic models and
# ApiClient.param_serialize (proxy). pyproject.toml's k8s extra pins the same.
CLIENT_MIN = (37, 0)
# kind -> (API group attribute, snake-case resource in method names, namespaced)
KINDS = {
    "Namespace": ("core", "namespace", False),
    "ConfigMap": ("core", "config_map", True),
    "PersistentVolumeClaim": ("core", "persistent_volume_claim", True),
    "Service": ("core", "service", True),
    "Pod": ("core", "pod", True),
    "Job": ("batch", "job", True),
    "CronJob": ("batch", "cron_job", True),
    "Deployment": ("apps", "deployment", True),
    "ReplicaSet": ("apps", "replica_set", True),
    "StorageClass": ("storage", "storage_class", False),
    "RuntimeClass": ("node", "runtime_class", False),
    "Node": ("core", "node", False),
    "Event": ("core", "event", True),
    # a classroom's per-attendee objects (labctl class)
    "ServiceAccount": ("core", "service_account", True),
    "ResourceQuota": ("core", "resource_quota", True),
    "LimitRange": ("core", "limit_range", True),
    "Role": ("rbac", "role", True),
    "RoleBinding": ("rbac", "role_binding", True),
    "NetworkPolicy": ("networking", "network_policy", True),
}
PLURAL = {"PersistentVolumeClaim": "persistentvolumeclaims", "ConfigMap": "configmaps",
          "StorageClass": "storageclasses", "RuntimeClass": "runtimeclasses",
          "NetworkPolicy": "networkpolicies"}


class ClusterError(UsageError):
    """The cluster is unreachable or refuses: a one-line reason with the fix; exit 1."""

    exit_code = 1


class Unreachable(ClusterError):
    """No answer from the API server (network, TLS, timeout)."""


class NotFound(ClusterError):
    pass


class Conflict(ClusterError):
    pass


class Forbidden(ClusterError):
    """403: RBAC, or an admission plugin (Pod Security); the message says which."""


class Terminating(Forbidden):
    """403 from NamespaceLifecycle: the namespace is being deleted."""


def kubeconfig_path(explicit: str | None = None) -> Path | None:
    """--kubeconfig, then $KUBECONFIG, then the Vagrant cluster's ./kubeconfig, then ~/.kube."""
    candidates = [explicit, os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None,
                  str(REPO / "kubeconfig"), str(Path.home() / ".kube" / "config")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    if explicit:
        raise ClusterError(f"kubeconfig {explicit} does not exist")
    return None


def _status(exc: Any) -> dict[str, Any]:
    """The API server's Status object of a refusal ({} when the body is not one)."""
    try:
        body = json.loads(exc.body)
    except (TypeError, ValueError, AttributeError):
        return {"message": str(getattr(exc, "reason", exc))}
    return body if isinstance(body, dict) else {}


def _message(exc: Any) -> str:
    return str(_status(exc).get("message") or getattr(exc, "reason", exc))


def refusal(what: str, code: int, status: dict[str, Any], host: str,
            kubeconfig: Path | str | None) -> ClusterError:
    """The one-line error for a refused request, keeping the API server's own message.

    403 has several authors, told apart by the Status they send: the RBAC authorizer
    (`... cannot create resource "jobs" ...`), NamespaceLifecycle (cause NamespaceTerminating:
    the namespace is being deleted) and Pod Security admission (`violates PodSecurity ...`)."""
    message = " ".join(str(status.get("message") or "").split()) or f"HTTP {code}"
    causes = {c.get("reason") for c in (status.get("details") or {}).get("causes") or []}
    if code == 401:
        return ClusterError(f"the API server at {host} rejected the credentials in "
                            f"{kubeconfig} (401): fetch a fresh kubeconfig")
    if code == 403 and ("NamespaceTerminating" in causes or "being terminated" in message):
        return Terminating(f"cannot {what}: {message}: wait until the namespace is gone "
                           "(`kubectl get namespaces`), then run again")
    if code == 403 and " cannot " in message and "resource" in message:
        return Forbidden(f"RBAC: not allowed to {what} (403: {message}): ask the cluster admin "
                         "for a Role allowing it, or use the admin kubeconfig")
    if code == 403:
        return Forbidden(f"cannot {what}: 403 {message}")
    if code == 404:
        return NotFound(f"not found: {what}: {message}")
    if code == 409:
        return Conflict(f"conflict: {what}: {message}")
    return ClusterError(f"cannot {what}: {code} {message}")


NETWORK_REASONS = ("connection refused", "timed out", "no route to host",
                   "name or service not known", "temporary failure in name resolution",
                   "certificate verify failed")


def _network_reason(exc: BaseException) -> str:
    """The gist of a urllib3/socket error, not its page-long repr."""
    text = " ".join(str(getattr(exc, "reason", None) or exc).split())
    return next((r for r in NETWORK_REASONS if r in text.lower()), text[:120])


_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _stamped(raw: bytes) -> tuple[str, str]:
    """`2026-12-02T02:05:31.123456789Z text` (timestamps=true) -> (timestamp, text). The
    runtime stamps in the node's time zone, so the suffix may be an offset (`+01:00`); one
    node's stamps keep one offset and one width, so they still sort as strings."""
    line = raw.decode("utf-8", "replace").rstrip("\r")
    ts, space, text = line.partition(" ")
    return (ts, text) if space and _STAMP.match(ts) else ("", line)


def _since(stamp: str | None) -> str | None:
    """sinceTime for a stamp: its whole second, in UTC (the API server's format)."""
    if not stamp:
        return None
    from datetime import UTC, datetime

    whole = re.sub(r"\.\d+", "", stamp).replace("Z", "+00:00")
    return datetime.fromisoformat(whole).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _what(verb: str, kind: str, name: str | None, namespace: str | None) -> str:
    what = f"{verb} {PLURAL.get(kind, kind.lower() + 's')}"
    if name:
        what += f" ({name})"
    return what + (f" in namespace {namespace}" if namespace else "")


def client_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kubernetes")
    except PackageNotFoundError:
        return "0"


def check_client(installed: str) -> None:
    """One line, not a traceback deep in the client, when the venv holds an older client."""
    try:
        have = tuple(int(part) for part in installed.split(".")[:2])
    except ValueError:
        have = (0,)
    if have < CLIENT_MIN:
        want = ".".join(map(str, CLIENT_MIN))
        raise UsageError(f"the Kubernetes target needs the kubernetes client >= {want}, this "
                         f"venv has {installed}: `.venv/bin/pip install -e '.[k8s]'`")


class Api:
    """A connected client. `host` is the API server, for messages."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        from labctl.k8s.optional import need

        client, config = need("kubernetes.client"), need("kubernetes.config")
        check_client(client_version())

        path = kubeconfig_path(kubeconfig)
        if path is None:
            raise ClusterError("no kubeconfig found: `vagrant up` writes ./kubeconfig for the "
                               "workshop cluster; or set KUBECONFIG / pass --kubeconfig")
        try:
            self.client_api = config.new_client_from_config(str(path), context=context)
        except Exception as exc:  # ConfigException, YAML errors, missing context
            raise ClusterError(f"cannot use kubeconfig {path}: {' '.join(str(exc).split())}")\
                from None
        self.kubeconfig = path
        self.host = self.client_api.configuration.host
        self.apis = {
            "core": client.CoreV1Api(self.client_api),
            "batch": client.BatchV1Api(self.client_api),
            "apps": client.AppsV1Api(self.client_api),
            "storage": client.StorageV1Api(self.client_api),
            "node": client.NodeV1Api(self.client_api),
            "version": client.VersionApi(self.client_api),
            "rbac": client.RbacAuthorizationV1Api(self.client_api),
            "networking": client.NetworkingV1Api(self.client_api),
        }

    # --- error translation ---------------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from pydantic import ValidationError
        from urllib3.exceptions import HTTPError

        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT_S)
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 0 or exc.status is None:
                raise Unreachable(f"cannot reach the Kubernetes API at {self.host}: "
                                   f"{_message(exc)}") from None
            raise refusal(what, exc.status, _status(exc), self.host, self.kubeconfig) from None
        except ValidationError as exc:  # the client checks answers against its models
            raise ClusterError(f"unexpected answer from {self.host} to `{what}`: "
                               f"{exc.error_count()} field error(s); is it a Kubernetes API "
                               "server of a supported version?") from None
        except (HTTPError, OSError) as exc:
            raise Unreachable(f"cannot reach the Kubernetes API at {self.host} "
                               f"({_network_reason(exc)}): is the cluster up (`vagrant up`)?")\
                from None

    def _fn(self, verb: str, kind: str, namespaced_call: bool) -> Any:
        group, snake, namespaced = KINDS[kind]
        api = self.apis[group]
        if verb == "list" and namespaced and not namespaced_call:
            return getattr(api, f"list_{snake}_for_all_namespaces")
        return getattr(api, f"{verb}_{'namespaced_' if namespaced else ''}{snake}")

    def _plain(self, obj: Any) -> Any:
        return self.client_api.sanitize_for_serialization(obj)

    # --- calls ---------------------------------------------------------------------------------
    def version(self) -> str:
        info = self._call("read the server version", self.apis["version"].get_code,
                          _request_timeout=5)
        return str(info.git_version)

    def create(self, doc: dict[str, Any]) -> None:
        kind, meta = doc["kind"], doc["metadata"]
        ns = meta.get("namespace")
        what = _what("create", kind, meta["name"], ns)
        fn = self._fn("create", kind, True)
        if KINDS[kind][2]:
            self._call(what, fn, ns, doc)
        else:
            self._call(what, fn, doc)

    def replace(self, doc: dict[str, Any]) -> None:
        """PUT the whole object over the existing one (`doc` carries its resourceVersion)."""
        kind, meta = doc["kind"], doc["metadata"]
        ns = meta.get("namespace")
        fn = self._fn("replace", kind, True)
        args = (meta["name"], ns, doc) if KINDS[kind][2] else (meta["name"], doc)
        self._call(_what("replace", kind, meta["name"], ns), fn, *args)

    def token(self, service_account: str, namespace: str, seconds: int) -> str:
        """A TokenRequest (authentication.k8s.io/v1) for the ServiceAccount: a signed token,
        valid `seconds` (the API server may shorten it), revoked when the account is deleted."""
        from kubernetes import client

        # No audiences: the API server's own (registry/core/serviceaccount/storage/token.go).
        body = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds))
        fn = self.apis["core"].create_namespaced_service_account_token
        reply = self._call(f"request a token for serviceaccount {service_account} in namespace "
                           f"{namespace}", fn, service_account, namespace, body)
        return str(self._plain(reply)["status"]["token"])

    def read(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        fn = self._fn("read", kind, True)
        args = (name, namespace) if KINDS[kind][2] else (name,)
        try:
            return self._plain(self._call(_what("read", kind, name, namespace), fn, *args))
        except NotFound:
            return None

    def delete(self, kind: str, name: str, namespace: str | None = None,
               grace_s: int | None = None) -> bool:
        """Delete (pods of a Job go with it); False when it was already gone."""
        from kubernetes import client

        fn = self._fn("delete", kind, True)
        args = (name, namespace) if KINDS[kind][2] else (name,)
        body = client.V1DeleteOptions(propagation_policy="Background",
                                      grace_period_seconds=grace_s)
        try:
            self._call(_what("delete", kind, name, namespace), fn, *args, body=body)
        except NotFound:
            return False
        return True

    def evict(self, pod: str, namespace: str, grace_s: int | None = None) -> bool:
        """Delete a pod through the Eviction API (policy/v1): unlike a plain DELETE, it marks the
        pod DisruptionTarget, which a Job's podFailurePolicy can ignore. False when gone."""
        from kubernetes import client

        body = client.V1Eviction(  # TypeMeta set as kubectl drain sets it
            api_version="policy/v1", kind="Eviction",
            metadata=client.V1ObjectMeta(name=pod, namespace=namespace),
            delete_options=client.V1DeleteOptions(grace_period_seconds=grace_s))
        try:
            self._call(f"evict pod {pod} in namespace {namespace}",
                       self.apis["core"].create_namespaced_pod_eviction, pod, namespace, body)
        except NotFound:
            return False
        return True

    def list(self, kind: str, namespace: str | None = None, selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        fn = self._fn("list", kind, namespace is not None)
        kwargs: dict[str, Any] = {}
        if selector:
            kwargs["label_selector"] = selector
        if field_selector:
            kwargs["field_selector"] = field_selector
        args = (namespace,) if namespace is not None and KINDS[kind][2] else ()
        result = self._call(_what("list", kind, None, namespace), fn, *args, **kwargs)
        return list(self._plain(result).get("items") or [])

    def _log_stream(self, pod: str, namespace: str, container: str,
                    since: str | None) -> Iterator[tuple[str, str]]:
        """(timestamp, line) of one follow request. Built by hand: the generated client has no
        sinceTime for pod logs, and its Watch drops a last line without a newline."""
        query = [("container", container), ("follow", "true"), ("timestamps", "true")]
        if since:
            query.append(("sinceTime", since))
        params = self.client_api.param_serialize(
            "GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log", query_params=query,
            header_params={"Accept": "*/*"}, auth_settings=["BearerToken"])
        what = _what("read", "Pod", pod, namespace) + " logs"
        reply = self._call(what, self.client_api.call_api, *params,
                           _request_timeout=(REQUEST_TIMEOUT_S, LOG_IDLE_S))
        if reply.status >= 400:
            reply.read()
            try:
                status = dict(json.loads(reply.data or b"{}"))
            except ValueError:
                status = {"message": reply.data.decode("utf-8", "replace")[:200]}
            raise refusal(what, reply.status, status, self.host, self.kubeconfig)
        pending = b""
        # read1: what has arrived, so lines before a broken connection are not lost with it.
        while chunk := reply.response.read1(64 * 1024):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                yield _stamped(raw)
        if pending:
            yield _stamped(pending)

    def _container_state(self, pod: str, namespace: str, container: str) -> str:
        """running, waiting, terminated, or gone (the pod was deleted). A pod that ended
        before its container started (the kubelet refused it) counts as terminated."""
        obj = self.read("Pod", pod, namespace)
        if obj is None:
            return "gone"
        if obj.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return "terminated"
        for status in obj.get("status", {}).get("containerStatuses") or []:
            if status.get("name") == container:
                return next(iter(status.get("state") or {"waiting": None}))
        return "waiting"

    def log_lines(self, pod: str, namespace: str, container: str,
                  sleep: Any = time.sleep, clock: Any = time.monotonic) -> Iterator[str]:
        """Follow a pod's log until the container ends. A stream that breaks while the container
        runs (API server restart, VIP failover) is followed again from the last line's second
        (sinceTime); lines already passed on are dropped by their timestamps. After
        LOG_RETRY_S of failures the follower gives up with a marker line."""
        from urllib3.exceptions import HTTPError, ReadTimeoutError

        last: str | None = None  # timestamp of the last line passed on
        same = 0  # how many lines passed on carry exactly that timestamp
        failing_since: float | None = None
        while True:
            ended = False
            try:
                skip = same
                for ts, text in self._log_stream(pod, namespace, container, _since(last)):
                    if last is not None and ts and ts < last:
                        continue
                    if ts and ts == last and skip:
                        skip -= 1
                        continue
                    last, same = (ts, same + 1) if ts == last else (ts, 1)
                    failing_since = None
                    yield text
                ended = True
                state = self._container_state(pod, namespace, container)
            except (ClusterError, HTTPError, OSError) as exc:
                problem = _network_reason(exc) if not isinstance(exc, ClusterError) else str(exc)
                try:
                    state = self._container_state(pod, namespace, container)
                except ClusterError:
                    state = "unknown"
                refused = isinstance(exc, ClusterError) and not isinstance(exc, Unreachable)
                if state == "gone" or (state == "terminated" and refused):
                    return  # nothing left to read: deleted, or refused after its end
                if isinstance(exc, ReadTimeoutError) and state == "running":
                    continue  # a quiet task (a parameter server prints little): follow again
                now = clock()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since >= LOG_RETRY_S:
                    yield (f"----- labctl: gave up following pod {pod}'s log after "
                           f"{LOG_RETRY_S:g} s: {problem} -----")
                    return
                sleep(LOG_RETRY_PAUSE_S)
                continue
            if ended and state in ("terminated", "gone"):
                return
            sleep(LOG_RETRY_PAUSE_S)  # ended while the container runs: the server cut it

    def proxy(self, namespace: str, service: str, port: int, path: str,
              body: dict[str, Any] | None = None) -> Any:
        """A JSON request to a Service through the API server's proxy (no port-forward, no
        route from here to the pod network needed); the decoded JSON reply, errors included:
        an object, or a list (TensorBoard's scalars). `path` may end in a query string."""
        method = "GET" if body is None else "POST"
        resource = f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path}"
        params = self.client_api.param_serialize(
            method, resource, header_params={"Content-Type": "application/json",
                                             "Accept": "application/json"},
            body=body, auth_settings=["BearerToken"])
        what = f"call {method} {path} on service {service} in namespace {namespace}"
        reply = self._call(what, self.client_api.call_api, *params)
        reply.read()
        try:
            decoded = json.loads(reply.data or b"{}")
        except ValueError:
            text = " ".join((reply.data or b"").decode("utf-8", "replace").split())[:120]
            raise ClusterError(f"cannot {what}: the reply is not JSON ({reply.status}: "
                               f"{text})") from None
        kind = decoded.get("kind") if isinstance(decoded, dict) else None
        if kind == "Status" and reply.status >= 400:  # the API server's own
            raise refusal(what, reply.status, decoded, self.host, self.kubeconfig)
        return decoded

    def log(self, pod: str, namespace: str, container: str) -> str:
        fn = self.apis["core"].read_namespaced_pod_log
        return str(self._call(_what("read", "Pod", pod, namespace) + " logs", fn, pod,
                              namespace, container=container))

