"""`labctl class`: the per-attendee objects (schema-valid, quota sized from the labs, a Role that
allows every call labctl makes in a namespace and nothing more), `up`/`down` idempotent against
the fake API server, kubeconfigs and cards, the instructor's table, and verdicts recorded.

The fake API server authorizes like RBAC would with the Role's rules (the `allow` predicate);
RBAC and quota admission themselves are exercised only on a real cluster."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from _fake_cluster import FakeApi
from _manifests import load
from _prereqs import missing
from test_k8s_cluster import async_scripts, run_lab

from labctl import classroom_cli, versions
from labctl.errors import UsageError
from labctl.k8s import classroom, collect, kubeconfigs, lifecycle, roster
from labctl.k8s import manifests as m
from labctl.k8s import render as rendering
from labctl.k8s.api import Forbidden
from labctl.plan import plan_lab

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def names(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "names.txt"
    path.write_text(text)
    return path


# --- names ------------------------------------------------------------------------------------
def test_names_become_namespaces(tmp_path: Path) -> None:
    found = classroom.read_names(names(tmp_path, "# room 2\nAlice Smith\n\n  bob  # late\n"))
    assert [(a.name, a.namespace) for a in found] == [("Alice Smith", "lab-alice-smith"),
                                                      ("bob", "lab-bob")]


@pytest.mark.parametrize(("text", "error"), [
    ("alice\nAlice\n", r"names.txt:2: 'Alice' and 'alice' both become lab-alice"),
    ("alice\n***\n", r"names.txt:2: '\*\*\*' gives no usable namespace name"),
    ("x" * 60 + "\n", r"names.txt:1: 'x{60}' gives no usable namespace name.*at most 59"),
    ("# nobody\n\n", r"names no attendee"),
])
def test_bad_names_are_one_line_errors(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(UsageError, match=error):
        classroom.read_names(names(tmp_path, text))


# --- the objects --------------------------------------------------------------------------------
def test_every_object_validates_strictly_against_kubernetes() -> None:
    who = classroom.Attendee("Alice Smith", "alice-smith")
    docs = classroom.objects(who, ["192.168.56.11", "192.168.56.21"])
    assert [d["kind"] for d in docs] == ["Namespace", "ServiceAccount", "Role", "RoleBinding",
                                         "ResourceQuota", "LimitRange", "NetworkPolicy"]
    for doc in docs:
        kubernetes_validate.validate(doc, versions.get("kube_version"), strict=True)
        assert doc["metadata"]["labels"][classroom.LABEL] == "true"
        assert doc["metadata"].get("namespace", "lab-alice-smith") == "lab-alice-smith"
    space, account, role, binding, _, _, policy = docs
    assert space["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": "lab-alice-smith"}]
    ingress = policy["spec"]["ingress"]
    assert ingress[0] == {"from": [{"podSelector": {}}]}  # its own pods only ...
    assert ingress[1]["from"] == [{"ipBlock": {"cidr": "192.168.56.11/32"}},
                                  {"ipBlock": {"cidr": "192.168.56.21/32"}}]  # ... and nodes


def cluster_labs() -> list[str]:
    """Every lab that runs on the k8s target."""
    return sorted(p.parent.name for p in (REPO / "labs").glob("[0-9][0-9]-*/lab.toml"))


def run_docs(name: str) -> list[dict[str, Any]]:
    """A run's objects in an attendee's namespace, and the collector pod that copies results."""
    lab = load(name)
    where = m.Placement(namespace="lab-x", run_id="r1", create_namespace=False)
    docs = rendering.render(lab, plan_lab(lab, {}, {}, []), where)
    names_ = m.Names(lab, plan_lab(lab, {}, {}, []), where)
    return [*docs, collect.collector_pod(lab, where, names_, m.image(lab, where))]


def test_one_run_of_any_lab_fits_the_quota_next_to_every_labs_shared_objects() -> None:
    """The quota is computed for the worst lab: its run (pods, volume, the collector) plus what
    every lab leaves running for its next run (lab 11's model server and its models volume)."""
    left = list({(d["kind"], d["metadata"]["name"]): d for name in cluster_labs()
                 for d in classroom.shared(run_docs(name))}.values())  # one server, two labs
    for name in cluster_labs():
        mine = [d for d in run_docs(name) if d not in left]
        need = classroom.needs(mine + left)
        assert not classroom.fits(need), f"{name}: {classroom.fits(need)}"


def test_the_quota_check_fails_a_lab_that_outgrows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(classroom.QUOTA, "requests.memory", "1Gi")
    need = classroom.needs(run_docs("09-distributed-training-on-kubernetes"))
    assert classroom.fits(need) == ["requests.memory 2.38Gi > 1Gi"]


@pytest.mark.parametrize(("workers", "attendees", "problem"), [
    (2, 1, None),
    (2, 2, "2 attendees x 2 CPU = 4 CPU of requests, but the schedulable nodes offer 3.6 CPU"),
    (10, 7, "7 attendees x 5 GiB = 35 GiB of requests, but the schedulable nodes offer 33.3 GiB"),
    (10, 6, None),
])
def test_the_room_must_fit_the_nodes(workers: int, attendees: int, problem: str | None) -> None:
    nodes = [{"metadata": {"name": "cp"}, "spec": {"taints": [
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
              "status": {"allocatable": {"cpu": "2", "memory": "3788Mi"}}}]
    nodes += [{"metadata": {"name": f"w{i}"}, "spec": {},
               "status": {"allocatable": {"cpu": "2", "memory": "3788Mi"}}}
              for i in range(workers)]
    found = classroom.room_problem(nodes, attendees)
    assert (found is None) if problem is None else (found and found.startswith(problem)), found


# --- RBAC: every call labctl makes in an attendee's namespace, and nothing cluster-wide ----------
FAKE_VERBS = {"get": ["get"], "list": ["list"], "create": ["create"], "delete": ["delete"],
              "update": ["update"], "evict": ["create"]}
RESOURCE = {"Pod": ("", "pods"), "Service": ("", "services"), "ConfigMap": ("", "configmaps"),
            "PersistentVolumeClaim": ("", "persistentvolumeclaims"), "Event": ("", "events"),
            "Job": ("batch", "jobs"), "CronJob": ("batch", "cronjobs"),
            "Deployment": ("apps", "deployments"), "ReplicaSet": ("apps", "replicasets")}


def role_allows(verb: str, kind: str) -> bool:
    """The Role's rules as RBAC reads them; a Role grants nothing cluster-scoped. /version is
    everyone's (the default ClusterRole system:public-info-viewer)."""
    if (verb, kind) == ("get", "version"):
        return True
    if kind not in RESOURCE:
        return False
    group, resource = RESOURCE[kind]
    if verb == "evict":
        resource += "/eviction"
    return any(group in r["apiGroups"] and resource in r["resources"]
               and set(FAKE_VERBS[verb]) <= set(r["verbs"]) for r in classroom.RULES)


def attendee_cluster() -> FakeApi:
    api = FakeApi(scripts=async_scripts())
    api.create({"kind": "Namespace", "metadata": {"name": "lab-alice"}})  # the instructor's
    api.allow = role_allows
    api.calls.clear()
    return api


def test_a_run_and_its_clean_up_need_nothing_the_role_does_not_grant(fake_labs: Path) -> None:
    api = attendee_cluster()
    done = run_lab(api, namespace="lab-alice", kills=("worker:1@10",))
    assert done.outcome.status == "succeeded", done.outcome
    roster.record_verdict(api, "lab-alice", "04-fake-async", "PASS", done.run.run_id, NOW)
    roster.record_verdict(api, "lab-alice", "04-fake-async", "FAIL", done.run.run_id, NOW)
    assert lifecycle.clean(done.run, api=api, shared=True)
    refused = [c for c in api.calls if not role_allows(c[0], c[1])]
    # Only the cluster-scoped reads labctl is written to do without.
    assert {(v, k) for v, k, _ in refused} <= {("get", "Namespace"), ("get", "StorageClass"),
                                               ("list", "Node")}, refused


def test_the_authorizer_really_refuses(fake_labs: Path) -> None:
    api = attendee_cluster()
    with pytest.raises(Forbidden, match="RBAC: not allowed to create namespaces"):
        api.create({"kind": "Namespace", "metadata": {"name": "lab-eve"}})


# --- up, status, down against the fake API server --------------------------------------------
def admin_kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "admin.conf"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "admin",
        "clusters": [{"name": "k", "cluster": {"server": "https://192.168.56.10:6443",
                                               "certificate-authority-data": "Q0E="}}],
        "contexts": [{"name": "admin", "context": {"cluster": "k", "user": "admin"}}],
        "users": [{"name": "admin", "user": {"token": "x"}}]}))
    return path


def classroom_api(tmp_path: Path, workers: int = 4) -> FakeApi:
    api = FakeApi()
    api.objects.clear()
    for i in range(workers):
        api._put({"kind": "Node", "metadata": {"name": f"w{i}"}, "spec": {}, "status": {
            "allocatable": {"cpu": "8", "memory": "32Gi"},
            "addresses": [{"type": "InternalIP", "address": f"192.168.56.{21 + i}"}]}})
    api.kubeconfig = admin_kubeconfig(tmp_path)  # type: ignore[attr-defined]
    return api


def class_args(tmp_path: Path, verb: str, **extra: Any) -> argparse.Namespace:
    base = {"verb": verb, "hours": 8, "server": None, "out": tmp_path / "room", "json": False,
            "serve": None, "all": False}
    if "names" not in extra:
        base["names"] = names(tmp_path, "Alice Smith\nbob\n")
    return argparse.Namespace(**{**base, **extra})


def test_up_twice_then_down_leaves_exactly_nothing(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    api = classroom_api(tmp_path)
    before = set(api.objects)
    assert classroom_cli.up(api, class_args(tmp_path, "up")) == 0
    made = set(api.objects) - before
    assert len(made) == 2 * 7
    first = {k: v["metadata"]["resourceVersion"] for k, v in api.objects.items()}
    assert classroom_cli.up(api, class_args(tmp_path, "up")) == 0  # again: updates, no clash
    assert set(api.objects) - before == made
    assert all(api.objects[k]["metadata"]["resourceVersion"] != first[k] for k in made)
    config = tmp_path / "room" / "alice-smith" / "kubeconfig"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    conf = yaml.safe_load(config.read_text())
    assert conf["clusters"][0]["cluster"] == {"server": "https://192.168.56.10:6443",
                                              "certificate-authority-data": "Q0E="}
    assert conf["users"][0]["user"]["token"] == "token-lab-alice-smith-attendee-28800"
    assert kubeconfigs.context_namespace(config) == "lab-alice-smith"
    card = (tmp_path / "room" / "alice-smith.html").read_text()
    assert "<h1>Workshop access: Alice Smith</h1>" in card
    assert "<code>lab-alice-smith</code>" in card and "labctl run 08 --target k8s" in card
    out = capsys.readouterr().out
    assert "labctl: 2 attendee(s) ready until" in out
    # Someone else's namespace is never taken over.
    api._put({"kind": "Namespace", "metadata": {"name": "lab-carol"}, "status": {}})
    with pytest.raises(UsageError, match="Namespace lab-carol exists and was not made by"):
        classroom_cli.up(api, class_args(tmp_path, "up", names=names(tmp_path, "carol\n")))
    api.terminate_s = 0.01
    assert classroom_cli.down(api, class_args(tmp_path, "down")) == 0
    left = set(api.objects) - before
    assert left == {("Namespace", None, "lab-carol")}, left


def test_up_refuses_a_room_the_nodes_cannot_hold_and_creates_nothing(tmp_path: Path) -> None:
    api = classroom_api(tmp_path, workers=1)
    before = dict(api.objects)
    with pytest.raises(UsageError, match=r"^9 attendees x 2 CPU.*at most 3 attendees"):
        classroom_cli.up(api, class_args(tmp_path, "up", names=names(
            tmp_path, "\n".join(f"a{i}" for i in range(9)))))
    assert api.objects == before


def test_status_shows_each_attendees_last_lab_verdict_and_whats_stuck(tmp_path: Path) -> None:
    api = classroom_api(tmp_path)
    classroom_cli.up(api, class_args(tmp_path, "up"))
    api._put({"kind": "Job", "metadata": {"name": "w", "namespace": "lab-bob", "labels": {
        "labctl/lab": "09-distributed-training-on-kubernetes", "labctl/run-id": "r2"}},
        "status": {}})
    api._put({"kind": "Pod", "metadata": {"name": "w-0", "namespace": "lab-bob"}, "status": {
        "phase": "Pending", "containerStatuses": [
            {"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}})
    roster.record_verdict(api, "lab-alice-smith", "08-kubernetes-basics", "PASS", "r1", NOW)
    found = {r.attendee: r for r in roster.rows(api, NOW)}
    alice, bob = found["Alice Smith"], found["bob"]
    assert (alice.lab, alice.verdict, alice.problems) == ("08-kubernetes-basics", "PASS", [])
    assert (bob.lab, bob.state, bob.verdict) == ("09-distributed-training-on-kubernetes",
                                                 "running", "-")
    assert bob.problems == ["w-0: ImagePullBackOff"]
    page = roster.page(list(found.values()), NOW)
    assert '<meta http-equiv="refresh" content="10">' in page
    assert '<tr class="stuck"><td>bob</td>' in page and '<tr class="done"><td>Alice Smith' in page
    assert json.loads(roster.as_json([alice]))[0]["verdict"] == "PASS"


def test_the_status_page_renders_in_a_real_browser(tmp_path: Path) -> None:
    """Headless Chromium loads `class status --serve` over HTTP for a room of fake attendees
    (recorded API objects): the DOM it built holds every row, and the screenshot is kept."""
    browser = shutil.which("chromium")
    if browser is None:
        missing("chromium is not installed (make tools installs it: apt-get install -y chromium)")
    api = classroom_api(tmp_path)
    room = "\n".join(["Alice Smith", "bob", *(f"attendee {i}" for i in range(10))])
    classroom_cli.up(api, class_args(tmp_path, "up", names=names(tmp_path, room)))
    api._put({"kind": "Pod", "metadata": {"name": "w-0", "namespace": "lab-bob"}, "status": {
        "phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                            "message": "0/3 nodes are available: 3 Insufficient "
                                                       "cpu."}]}})
    roster.record_verdict(api, "lab-alice-smith", "08-kubernetes-basics", "PASS", "r1")
    server = classroom_cli.page_server(api, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    shot = Path(os.environ.get("TEST_ARTIFACTS", tmp_path)) / "classroom-status.png"
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,800"]
    try:
        dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        subprocess.run([*flags, f"--screenshot={shot}", url], capture_output=True, timeout=120,
                       check=True)
    finally:
        server.shutdown()
        server.server_close()
    assert "<h1>Classroom: 12 attendees</h1>" in dom
    assert dom.count("<tr") == 13  # header + one per attendee
    assert '<tr class="done"><td>Alice Smith</td>' in dom
    assert "w-0: Pending (0/3 nodes are available: 3 Insufficient cpu.)" in dom
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")
