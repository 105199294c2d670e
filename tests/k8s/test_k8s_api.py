"""labctl.k8s.api with the real `kubernetes` client against a small fake API server over HTTP:
the requests labctl sends (paths, bodies, selectors, delete propagation, log following, the
service proxy) and the one-line errors it makes of refusals. The server is a mock: it answers
what these tests script, nothing more."""

from __future__ import annotations

import json
import socket
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from labctl import versions
from labctl.errors import UsageError
from labctl.k8s import api as k8s_api
from labctl.k8s.api import Api, ClusterError, Conflict, Forbidden

KUBE = versions.get("kube_version")
VERSION = {"major": "1", "minor": KUBE.split(".")[1], "gitVersion": f"v{KUBE}", "gitCommit": "x",
           "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
           "compiler": "gc", "platform": "linux/amd64"}
JOB = {"apiVersion": "batch/v1", "kind": "Job",
       "metadata": {"name": "async-worker-0", "namespace": "ns", "labels": {"a": "b"}},
       "spec": {"backoffLimit": 3, "template": {"spec": {
           "restartPolicy": "Never", "containers": [{"name": "tensorflow", "image": "i:1"}]}}}}


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class FakeApiServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], tuple[int, Any]] = {("GET", "/version/"): (200, VERSION)}
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                server.requests.append((self.command, url.path, parse_qs(url.query), body))
                route = server.routes.get((self.command, url.path),
                                          (404, status(404, "NotFound", "not found")))
                if callable(route):  # writes its own, possibly broken, reply
                    route(self, parse_qs(url.query))
                    return
                code, reply = route
                if reply == "echo":
                    reply = body
                data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
                self.send_response(code)
                kind = "text/plain" if isinstance(reply, str) else "application/json"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server}"}}}}]
users: [{{name: u, user: {{token: not-a-secret}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    return path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[FakeApiServer, Api]]:
    fake = FakeApiServer()
    yield fake, Api(str(kubeconfig(tmp_path / "kubeconfig", fake.url)))
    fake.httpd.shutdown()


def test_version_and_create_send_the_manifest_unchanged(server) -> None:
    fake, api = server
    fake.routes[("POST", "/apis/batch/v1/namespaces/ns/jobs")] = (201, "echo")
    fake.routes[("POST", "/api/v1/namespaces")] = (201, "echo")
    assert api.version() == f"v{KUBE}"
    api.create(JOB)
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}})
    method, path, _, body = fake.requests[1]
    assert (method, path, body) == ("POST", "/apis/batch/v1/namespaces/ns/jobs", JOB)
    assert fake.requests[2][1] == "/api/v1/namespaces"


def test_read_of_a_missing_object_is_none(server) -> None:
    _, api = server
    assert api.read("Job", "nope", "ns") is None


def test_delete_propagates_to_the_pods(server) -> None:
    fake, api = server
    fake.routes[("DELETE", "/apis/batch/v1/namespaces/ns/jobs/j")] = (
        200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
    assert api.delete("Job", "j", "ns") is True
    assert fake.requests[-1][3] == {"propagationPolicy": "Background"}
    assert api.delete("Job", "gone", "ns") is False


def test_list_sends_the_label_selector_and_returns_plain_dicts(server) -> None:
    fake, api = server
    fake.routes[("GET", "/apis/batch/v1/namespaces/ns/jobs")] = (
        200, {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": [JOB]})
    items = api.list("Job", "ns", "labctl/run-id=r1")
    assert items == [JOB]
    assert fake.requests[-1][2]["labelSelector"] == ["labctl/run-id=r1"]


# The Status bodies the API server sends, in upstream's words: the RBAC authorizer's denial
# (apiserver endpoints/handlers/responsewriters forbiddenMessage), NamespaceLifecycle's refusal
# in a namespace being deleted (cause NamespaceTerminating) and Pod Security admission.
RBAC = ('jobs.batch is forbidden: User "alice" cannot create resource "jobs" in API group '
        '"batch" in the namespace "ns"')
TERMINATING = ('jobs.batch "async-worker-0" is forbidden: unable to create new content in '
               'namespace ns because it is being terminated')
PSA = ('jobs.batch "async-worker-0" is forbidden: violates PodSecurity "restricted:latest": '
       'runAsNonRoot != true')


@pytest.mark.parametrize(("code", "message", "causes", "error", "text"), [
    (403, RBAC, [], Forbidden,
     f"RBAC: not allowed to create jobs (async-worker-0) in namespace ns (403: {RBAC}): ask "
     "the cluster admin"),
    (403, TERMINATING, [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}],
     k8s_api.Terminating, f"cannot create jobs (async-worker-0) in namespace ns: {TERMINATING}: "
                          "wait until the namespace is gone"),
    (403, PSA, [], Forbidden, f"cannot create jobs (async-worker-0) in namespace ns: 403 {PSA}"),
    (409, "already exists", [], Conflict,
     "conflict: create jobs (async-worker-0) in namespace ns: already exists"),
    (401, "Unauthorized", [], ClusterError, "rejected the credentials in"),
    (500, "boom", [], ClusterError,
     "cannot create jobs (async-worker-0) in namespace ns: 500 boom"),
])
def test_refusals_are_one_line_errors_with_the_servers_reason(
        server, code: int, message: str, causes: list[dict[str, str]], error: type,
        text: str) -> None:
    fake, api = server
    body = status(code, "Forbidden" if code == 403 else "X", message)
    body["details"] = {"name": "async-worker-0", "group": "batch", "kind": "jobs",
                       "causes": causes}
    fake.routes[("POST", "/apis/batch/v1/namespaces/ns/jobs")] = (code, body)
    with pytest.raises(error) as caught:
        api.create(JOB)
    assert text in str(caught.value) and "\n" not in str(caught.value)
    if message != RBAC:  # only the authorizer's denial is an RBAC problem
        assert "RBAC" not in str(caught.value)


def test_an_older_kubernetes_client_is_one_line_not_a_traceback() -> None:
    k8s_api.check_client(k8s_api.client_version())  # the venv's own passes
    with pytest.raises(UsageError) as caught:
        k8s_api.check_client("36.1.0")  # no pydantic models, no param_serialize
    assert str(caught.value) == ("the Kubernetes target needs the kubernetes client >= 37.0, "
                                 "this venv has 36.1.0: `.venv/bin/pip install -e '.[k8s]'`")
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    pin = pyproject["project"]["optional-dependencies"]["k8s"]
    assert pin == [f"kubernetes>={k8s_api.CLIENT_MIN[0]},<{k8s_api.CLIENT_MIN[0] + 1}"]


def test_an_unreachable_api_server_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the test talks to it
    api = Api(str(kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{port}")))
    with pytest.raises(ClusterError, match=rf"cannot reach the Kubernetes API at "
                                           rf"http://127.0.0.1:{port} .*is the cluster up"):
        api.version()


def test_no_kubeconfig_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setattr(k8s_api, "REPO", tmp_path)
    with pytest.raises(ClusterError, match="no kubeconfig found: `vagrant up` writes"):
        Api()
    with pytest.raises(ClusterError, match="kubeconfig /nope does not exist"):
        Api("/nope")


def stamp(second: int, nano: int, text: str, zone: str = "Z") -> str:
    return f"2026-12-02T10:00:{second:02d}.{nano:09d}{zone} {text}\n"


class LogScript:
    """GET .../pods/p/log: one scripted reply per request, sent chunked as the API server sends
    logs (one chunk per line). A reply whose `cut` is set stops mid-chunk and closes the
    connection, as a restarting API server or a moved VIP does."""

    def __init__(self, replies: list[tuple[str, bool]]) -> None:
        self.replies = replies
        self.queries: list[dict[str, list[str]]] = []

    def __call__(self, handler: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        self.queries.append(query)
        text, cut = self.replies.pop(0) if self.replies else ("", False)
        handler.protocol_version = "HTTP/1.1"
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for line in text.splitlines(keepends=True):
            data = line.encode()
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            handler.wfile.flush()
        if not cut:
            handler.wfile.write(b"0\r\n\r\n")
        else:
            handler.wfile.write(b"40\r\npartial")  # a chunk that never completes
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)


def pod(state: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"},
            "status": {"containerStatuses": [{"name": "tensorflow", "image": "i", "imageID": "",
                                              "ready": state == "running", "restartCount": 0,
                                              "state": {state: {} if state != "terminated" else
                                                        {"exitCode": 0}}}]}}


@pytest.mark.parametrize(("zone", "since"), [("Z", "2026-12-02T10:00:02Z"),
                                              ("+01:00", "2026-12-02T09:00:02Z")])
def test_a_broken_log_stream_is_followed_again_without_losing_or_repeating_lines(
        server, zone: str, since: str) -> None:
    """`zone`: the runtime stamps lines in the node's time zone; sinceTime goes in UTC."""
    fake, api = server
    logs = LogScript([
        # Cut after line 3; line 4 was in flight and is lost with the connection.
        (stamp(1, 1, "one", zone) + stamp(2, 5, "two", zone) + stamp(2, 7, "three", zone)
         + "2026-12-02T1", True),
        # Followed again from second 2: the server repeats two and three, then goes on; the
        # last line has no newline (the container's last write).
        (stamp(2, 5, "two", zone) + stamp(2, 7, "three", zone)
         + stamp(2, 9, "PROGRESS step=4", zone) + stamp(3, 0, "done", zone).rstrip("\n"),
         False),
    ])
    fake.routes[("GET", "/api/v1/namespaces/ns/pods/p/log")] = logs
    states = iter(["running", "terminated"])
    fake.routes[("GET", "/api/v1/namespaces/ns/pods/p")] = lambda h, q: json_reply(
        h, pod(next(states)))
    pauses: list[float] = []
    lines = list(api.log_lines("p", "ns", "tensorflow", sleep=pauses.append))
    assert lines == ["one", "two", "three", "PROGRESS step=4", "done"]
    first, again = logs.queries
    assert first["follow"] == ["true"] and first["timestamps"] == ["true"]
    assert first["container"] == ["tensorflow"] and "sinceTime" not in first
    assert again["sinceTime"] == [since]
    assert pauses == [k8s_api.LOG_RETRY_PAUSE_S]


def test_a_log_stream_that_stays_broken_gives_up_with_a_marker(server) -> None:
    fake, api = server
    fake.routes[("GET", "/api/v1/namespaces/ns/pods/p/log")] = LogScript(
        [(stamp(1, 1, "one"), True)] + [("", True)] * 1000)
    fake.routes[("GET", "/api/v1/namespaces/ns/pods/p")] = lambda h, q: json_reply(
        h, pod("running"))
    now = [0.0]

    def pause(seconds: float) -> None:
        now[0] += 30

    lines = list(api.log_lines("p", "ns", "tensorflow", sleep=pause, clock=lambda: now[0]))
    assert lines[0] == "one" and len(lines) == 2
    assert lines[1].startswith("----- labctl: gave up following pod p's log after 120 s: ")


def test_a_pod_that_ended_before_its_container_started_ends_the_follower(server) -> None:
    """The kubelet rejected the pod (phase Failed, container never ran): no 120 s of retries."""
    fake, api = server
    fake.routes[("GET", "/api/v1/namespaces/ns/pods/p/log")] = (
        400, status(400, "BadRequest", 'container "tensorflow" in pod "p" is waiting to start'))
    rejected = pod("waiting")
    rejected["status"]["phase"] = "Failed"
    fake.routes[("GET", "/api/v1/namespaces/ns/pods/p")] = lambda h, q: json_reply(h, rejected)
    pauses: list[float] = []
    assert list(api.log_lines("p", "ns", "tensorflow", sleep=pauses.append)) == []
    assert pauses == []


def test_the_collector_log_is_read_whole(server) -> None:
    fake, api = server
    fake.routes[("GET", "/api/v1/namespaces/ns/pods/p/log")] = (200, "one\nPROGRESS step=2\n")
    assert api.log("p", "ns", "tensorflow") == "one\nPROGRESS step=2\n"


def json_reply(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def test_service_proxy_posts_json_and_maps_rbac(server) -> None:
    fake, api = server
    path = "/api/v1/namespaces/ns/services/digits-serving:8501/proxy/v1/models/digits:predict"
    fake.routes[("POST", path)] = (200, {"predictions": [{"digit": 3}]})
    assert api.proxy("ns", "digits-serving", 8501, "v1/models/digits:predict",
                     {"instances": [[0.0]]}) == {"predictions": [{"digit": 3}]}
    assert fake.requests[-1][3] == {"instances": [[0.0]]}
    status_path = "/api/v1/namespaces/ns/services/digits-serving:8501/proxy/v1/models/digits"
    denied = ('services "digits-serving" is forbidden: User "alice" cannot get resource '
              '"services/proxy" in API group "" in the namespace "ns"')
    fake.routes[("GET", status_path)] = (403, status(403, "Forbidden", denied))
    with pytest.raises(Forbidden, match=r"RBAC: .*services/proxy"):
        api.proxy("ns", "digits-serving", 8501, "v1/models/digits")


def test_evict_posts_a_policy_v1_eviction(server) -> None:
    fake, api = server
    path = "/api/v1/namespaces/ns/pods/w-0-abc/eviction"
    fake.routes[("POST", path)] = (201, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                         "status": "Success"})
    assert api.evict("w-0-abc", "ns", grace_s=0) is True
    method, sent, _, body = fake.requests[-1]
    assert (method, sent) == ("POST", path)
    assert body == {"apiVersion": "policy/v1", "kind": "Eviction",
                    "metadata": {"name": "w-0-abc", "namespace": "ns"},
                    "deleteOptions": {"gracePeriodSeconds": 0}}
    assert api.evict("gone", "ns") is False
