"""Lab 14 without a cluster: the node probe's script runs for real against a fake host's files,
and the check judges answers against a cluster state shaped like the API server's replies
(Pod, Node, Event and ConfigMap as core/v1 serves them; an audit.k8s.io/v1 Event line).

What only a cluster shows (the audit log being written, etcd's revision equal to
resourceVersion, the kubelet's cpu.max, Flannel's routes) is stated in the README from the
upstream docs and is checked here only for shape."""

from __future__ import annotations

import copy
import json
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_k8s_labs import LABS, module

sys.path.insert(0, str(LABS))
from labkit import nodes
from labkit.checks import Failed

NS = "workshop"
AUDIT_ID = "0c7a3d9e-5b1f-4c1e-9f0d-2b8e6a4c1d77"
UIDS = {"anatomy-a": "8e2f4c1a-93b7-4d2e-a6f1-0c5d9b7e3a21",
        "anatomy-b": "1b2c3d4e-0000-4d2e-a6f1-0c5d9b7e3a22"}
NODE_OF = {"anatomy-a": "k8s-worker-1", "anatomy-b": "k8s-worker-2"}
IP_OF = {"anatomy-a": "10.244.1.5", "anatomy-b": "10.244.2.6"}
CLUSTER_IP = "10.105.20.31"


def slice_of(pod: str) -> str:
    return ("/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
            + UIDS[pod].replace("-", "_") + ".slice")


def route_table(routes: list[tuple[str, str, str]]) -> str:
    """/proc/net/route: little-endian hex destination and mask per line."""
    def hexip(ip: str) -> str:
        return f"{struct.unpack('<L', socket.inet_aton(ip))[0]:08X}"

    head = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
    return head + "".join(f"{iface}\t{hexip(dest)}\t00000000\t0001\t0\t0\t0\t{hexip(mask)}\t0\t0"
                          "\t0\n" for iface, dest, mask in routes)


def host(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        file = root / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    return root


def run_script(asks: dict[str, list[str]], root: Path) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-c", nodes.SCRIPT, json.dumps(asks), str(root / "host"),
                           str(root / "proc")], capture_output=True, text=True, timeout=60,
                          check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_probe_script_reads_greps_and_routes_on_the_hosts_files(tmp_path: Path) -> None:
    host(tmp_path / "host", {"/etc/hostname": "k8s-worker-1\n",
                             "/var/log/a.log": "one x\ntwo\nthree x\n"})
    host(tmp_path / "proc", {"net/route": route_table([
        ("eth0", "0.0.0.0", "0.0.0.0"), ("cni0", "10.244.1.0", "255.255.255.0"),
        ("flannel.1", "10.244.2.0", "255.255.255.0"), ("wide", "10.244.0.0", "255.255.0.0")])})
    code, out = run_script({"name": ["read", "/etc/hostname"], "gone": ["read", "/nope"],
                            "hits": ["grep", "/var/log/a.log", "x"],
                            "remote": ["route", "10.244.2.7"], "local": ["route", "10.244.1.9"],
                            "other": ["route", "10.244.9.1"], "out": ["route", "8.8.8.8"]},
                           tmp_path)
    assert code == 0, out
    assert json.loads(out) == {"name": "k8s-worker-1\n", "gone": None,
                               "hits": ["one x", "three x"], "remote": "flannel.1",
                               "local": "cni0", "other": "wide", "out": "eth0"}


class ProbeApi:
    """Objects as the API server returns them, and probe pods that run nodes.SCRIPT for real
    against each node's fake root (`roots[node]/host`, `roots[node]/proc`)."""

    def __init__(self, objects: list[dict[str, Any]], roots: dict[str, Path],
                 fail_on: str | None = None) -> None:
        self.objects = objects
        self.roots = roots
        self.fail_on = fail_on
        self.logs: dict[str, str] = {}
        self.deleted: list[str] = []

    def _match(self, obj: dict[str, Any], kind: str, ns: str | None, selector: str | None,
               field_selector: str | None) -> bool:
        meta = obj["metadata"]
        if obj["kind"] != kind or (ns is not None and meta.get("namespace") != ns):
            return False
        if selector:
            key, _, value = selector.partition("=")
            labels = meta.get("labels", {})
            if key not in labels or (value and labels[key] != value):
                return False
        if field_selector:
            name = field_selector.removeprefix("involvedObject.name=")
            return bool(obj.get("involvedObject", {}).get("name") == name)
        return True

    def list(self, kind: str, namespace: str | None = None, selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        return [o for o in self.objects if self._match(o, kind, namespace, selector,
                                                       field_selector)]

    def read(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return next((o for o in self.list(kind, namespace) if o["metadata"]["name"] == name),
                    None)

    def create(self, doc: dict[str, Any]) -> None:
        spec, name = doc["spec"], doc["metadata"]["name"]
        assert doc["metadata"]["namespace"] == nodes.NAMESPACE and spec["hostNetwork"]
        node = spec["nodeName"]
        (container,) = spec["containers"]
        asks = json.loads(container["command"][3])
        if node == self.fail_on:
            code, out = 1, "PermissionError: [Errno 13] Permission denied: '/host/var/log'"
        else:
            code, out = run_script(asks, self.roots[node])
        self.logs[name] = out
        self.objects.append({**doc, "status": {"phase": "Succeeded" if code == 0 else "Failed"}})

    def log(self, pod: str, namespace: str, container: str) -> str:
        return self.logs[pod]

    def delete(self, kind: str, name: str, namespace: str | None = None,
               grace_s: int | None = None) -> bool:
        self.deleted.append(name)
        self.objects = [o for o in self.objects if o["metadata"]["name"] != name]
        return True


def audit_line(**changes: Any) -> str:
    record = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
              "auditID": AUDIT_ID, "stage": "ResponseComplete", "verb": "patch",
              "requestURI": f"/apis/apps/v1/namespaces/{NS}/deployments/anatomy/scale",
              "user": {"username": "kubernetes-admin"},
              "objectRef": {"resource": "deployments", "namespace": NS, "name": "anatomy",
                            "apiGroup": "apps", "apiVersion": "v1", "subresource": "scale"},
              "responseStatus": {"metadata": {}, "code": 200}}
    return json.dumps({**record, **changes})


def cluster(tmp_path: Path) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    def pod(name: str) -> dict[str, Any]:
        return {"kind": "Pod", "metadata": {"name": name, "namespace": NS, "uid": UIDS[name],
                                            "labels": {"app": "anatomy"}},
                "spec": {"nodeName": NODE_OF[name], "containers": [{"name": "hello", "resources": {
                    "requests": {"cpu": "50m"}, "limits": {"cpu": "500m"}}}]},
                "status": {"phase": "Running", "podIP": IP_OF[name], "qosClass": "Burstable"}}

    def event(obj: str, reason: str, message: str) -> dict[str, Any]:
        return {"kind": "Event", "metadata": {"name": f"{obj}.{reason}", "namespace": NS},
                "involvedObject": {"name": obj}, "reason": reason, "message": message,
                "count": 1}

    objects = [
        {"kind": "Node", "metadata": {"name": "k8s-cp-1", "labels": {
            "node-role.kubernetes.io/control-plane": ""}}},
        {"kind": "Node", "metadata": {"name": "k8s-worker-1", "labels": {}}},
        {"kind": "Node", "metadata": {"name": "k8s-worker-2", "labels": {}}},
        {"kind": "ConfigMap", "metadata": {"name": "tour", "namespace": NS}, "data": {
            "audit-id": AUDIT_ID, "etcd-revision": "48213",
            "scheduled": f"anatomy-b={NODE_OF['anatomy-b']}", "cgroup": slice_of("anatomy-b"),
            "kube-proxy-chain": "KUBE-SVC-XVBOD4U2C6V7NDLL", "cni-route": "flannel.1",
            "dns": CLUSTER_IP}},
        {"kind": "Deployment", "metadata": {"name": "anatomy", "namespace": NS,
                                            "resourceVersion": "48213"},
         "spec": {"replicas": 2}},
        {"kind": "ReplicaSet", "metadata": {"name": "anatomy-6d5f", "namespace": NS,
                                            "labels": {"app": "anatomy"}}},
        {"kind": "Service", "metadata": {"name": "anatomy", "namespace": NS},
         "spec": {"clusterIP": CLUSTER_IP}},
        pod("anatomy-a"), pod("anatomy-b"),
        event("anatomy-6d5f", "SuccessfulCreate", "Created pod: anatomy-a"),
        event("anatomy-6d5f", "SuccessfulCreate", "Created pod: anatomy-b"),
        event("anatomy-b", "Scheduled",
              f"Successfully assigned {NS}/anatomy-b to {NODE_OF['anatomy-b']}"),
    ]
    audit = "/var/log/kubernetes/audit/audit.log"
    routes = route_table([("eth1", "10.213.0.0", "255.255.255.0"),
                          ("cni0", "10.244.1.0", "255.255.255.0"),
                          ("flannel.1", "10.244.2.0", "255.255.255.0")])
    roots = {
        "k8s-cp-1": tmp_path / "cp1",
        "k8s-worker-1": tmp_path / "w1",
        "k8s-worker-2": tmp_path / "w2",
    }
    host(roots["k8s-cp-1"] / "host", {audit: audit_line(stage="ResponseStarted") + "\n"
                                      + audit_line() + "\n"})
    host(roots["k8s-worker-1"] / "proc", {"net/route": routes})
    host(roots["k8s-worker-2"] / "host", {slice_of("anatomy-b") + "/cpu.max": "50000 100000\n"})
    return objects, roots


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def answer(key: str, value: str) -> Callable[[list[dict[str, Any]], dict[str, Path]], None]:
    def change(objects: list[dict[str, Any]], roots: dict[str, Path]) -> None:
        find(objects, "ConfigMap", "tour")["data"][key] = value
    return change


def write(node: str, path: str, text: str) -> Callable[[list[dict[str, Any]], dict[str, Path]],
                                                       None]:
    def change(objects: list[dict[str, Any]], roots: dict[str, Path]) -> None:
        host(roots[node] / "host", {path: text})
    return change


def drop_event(reason: str) -> Callable[[list[dict[str, Any]], dict[str, Path]], None]:
    def change(objects: list[dict[str, Any]], roots: dict[str, Path]) -> None:
        objects[:] = [o for o in objects if o.get("reason") != reason]
    return change


AUDIT = "/var/log/kubernetes/audit/audit.log"
MISTAKES = {
    "an answer missing": (answer("dns", ""), "no answer yet for dns"),
    "an auditID no node logged": (answer("audit-id", "ffffffff-0000"),
                                  "no control-plane node logged a request with auditID"),
    "the audit line of another request": (
        write("k8s-cp-1", AUDIT, audit_line(verb="delete", objectRef={
            "resource": "pods", "namespace": NS, "name": "anatomy-a"}) + "\n"),
        "was delete workshop/pods/anatomy-a/None, not a scale"),
    "a refused scale": (write("k8s-cp-1", AUDIT, audit_line(
        responseStatus={"code": 403}) + "\n"), "the scale request was answered 403"),
    "an old etcd revision": (answer("etcd-revision", "48100"),
                             "etcd-revision 48100 is not the Deployment's mod_revision now, 48213"),
    "too few pods created": (drop_event("SuccessfulCreate"),
                             "the ReplicaSets created 0 pods for 2 replicas"),
    "the wrong node": (answer("scheduled", "anatomy-b=k8s-worker-1"),
                       "anatomy-b does not run on 'k8s-worker-1'"),
    "no Scheduled event": (drop_event("Scheduled"), "no Scheduled event assigns anatomy-b"),
    "a cgroup of no pod": (answer("cgroup", "/sys/fs/cgroup/kubepods.slice/kubepods-pod1.slice"),
                           "is not the cgroup of a running anatomy pod"),
    "a container's cgroup below the pod's": (
        answer("cgroup", slice_of("anatomy-b") + "/cri-containerd-0a1b.scope"),
        "cpu.max does not exist on k8s-worker-2"),
    "a cpu.max the limit does not make": (
        write("k8s-worker-2", slice_of("anatomy-b") + "/cpu.max", "max 100000\n"),
        "cpu.max there reads 'max 100000', not '50000 100000'"),
    "another Service's chain": (answer("kube-proxy-chain", "KUBE-SVC-NPX46M4PTMTKRN6Y"),
                                "is not the Service's chain"),
    "the local bridge, not the overlay": (answer("cni-route", "cni0"),
                                          "routes 10.244.2.6 through flannel.1, not cni0"),
    "a pod's IP for the Service": (answer("dns", "10.244.1.5"),
                                   "resolved to 10.244.1.5, not the ClusterIP 10.105.20.31"),
}


@pytest.fixture
def check(monkeypatch: pytest.MonkeyPatch) -> Any:
    return module(LABS / "14-cluster-anatomy" / "check.py", monkeypatch)


def test_check_passes_a_tour_whose_answers_the_cluster_confirms(tmp_path: Path,
                                                                  check: Any) -> None:
    objects, roots = cluster(tmp_path)
    api = ProbeApi(objects, roots)
    verdict = check.tour(api, NS, "img")
    assert verdict == ("audited patch of deployments/anatomy/scale by kubernetes-admin; etcd "
                       "revision 48213; the ReplicaSet controller created 2 pods; scheduler put "
                       "anatomy-b on k8s-worker-2; cgroup cpu.max 50000 100000; "
                       "KUBE-SVC-XVBOD4U2C6V7NDLL; pod traffic over flannel.1; anatomy -> "
                       "10.105.20.31")
    assert len(api.deleted) == 3 and not api.logs.keys() - set(api.deleted)  # no probe left


@pytest.mark.parametrize("mistake", MISTAKES)
def test_check_fails_an_answer_the_cluster_contradicts(tmp_path: Path, check: Any,
                                                       mistake: str) -> None:
    objects, roots = cluster(tmp_path)
    change, reason = MISTAKES[mistake]
    change(objects, roots)
    with pytest.raises(Failed, match=reason.replace("(", r"\(").replace(")", r"\)")) as err:
        check.tour(ProbeApi(copy.deepcopy(objects), roots), NS, "img")
    assert err.value.hint


def test_a_probe_that_cannot_read_fails_with_its_reason_and_is_deleted(tmp_path: Path,
                                                                       check: Any) -> None:
    objects, roots = cluster(tmp_path)
    api = ProbeApi(objects, roots, fail_on="k8s-cp-1")
    with pytest.raises(Failed, match="cannot read node k8s-cp-1: PermissionError"):
        check.tour(api, NS, "img")
    assert not [o for o in api.objects if o["metadata"].get("namespace") == nodes.NAMESPACE]


def test_kube_proxy_chain_names_match_upstreams(check: Any) -> None:
    # Chains every kubeadm cluster has, as `iptables -t nat -L KUBE-SERVICES` lists them.
    assert check.kube_proxy_chain("default", "kubernetes", "https") == "KUBE-SVC-NPX46M4PTMTKRN6Y"
    assert check.kube_proxy_chain("kube-system", "kube-dns", "dns", "UDP") == \
        "KUBE-SVC-TCOU7JCQXEZGVUNU"
    assert check.kube_proxy_chain("kube-system", "kube-dns", "metrics") == \
        "KUBE-SVC-JD5MR3NA4I4DYORP"


@pytest.mark.parametrize(("limits", "expected"), [
    (["500m"], "50000 100000"), (["1", "250m"], "125000 100000"), (["500m", None], "max 100000")])
def test_cpu_max_follows_the_kubelets_quota(check: Any, limits: list[str | None],
                                            expected: str) -> None:
    pod = {"spec": {"containers": [{"resources": {"limits": {"cpu": q}} if q else {}}
                                   for q in limits]}}
    assert check.cpu_max(pod) == expected


def test_the_probe_pod_is_what_kubectl_debug_node_makes() -> None:
    doc = nodes.pod("k8s-worker-1", "img", {"x": ["read", "/etc/hostname"]})
    spec = doc["spec"]
    assert spec["nodeName"] == "k8s-worker-1" and spec["hostNetwork"] is True
    assert spec["tolerations"] == [{"operator": "Exists"}]  # control-plane nodes too
    (mount,) = spec["containers"][0]["volumeMounts"]
    assert mount == {"name": "host", "mountPath": "/host", "readOnly": True}
    assert spec["volumes"][0]["hostPath"]["path"] == "/"
    assert len(doc["metadata"]["name"]) <= 63
