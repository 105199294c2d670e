"""The decisions of `make verify` (tests/infra/_verdicts.py) on healthy and broken clusters.

Text outputs under outputs/ follow their printers upstream: kubectl top nodes
(kubectl pkg/metricsutil/metrics_printer.go and its test, v1.37), chronyc tracking (chrony 4.5
client.c print_report), busybox 1.36 nslookup. API objects are built to the Kubernetes v1.37
types (core/v1 Node, certificates/v1, apiregistration/v1, apps/v1) and Calico's operator v1.42
TigeraStatus. Where the check before this change fell for a broken output, the test shows that
too ("old check").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import _verdicts as v
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

OUTPUTS = Path(__file__).parent / "outputs"
NODES = {"k8s-cp-1": "10.10.0.11", "k8s-worker-1": "10.10.0.21", "k8s-worker-2": "10.10.0.22"}


def text(name: str) -> str:
    return (OUTPUTS / name).read_text()


def condition(kind: str, status: str, **extra: str) -> dict[str, str]:
    return {"type": kind, "status": status, **extra}


def node(name: str, *, ready: str = "True", kubelet: str = "v1.36.9",
         runtime: str = "containerd://2.2.9", **spec: Any) -> dict[str, Any]:  # fmt: skip
    pressure = [condition(kind, "False") for kind in v.PRESSURE]
    return {
        "metadata": {"name": name},
        "spec": spec,
        "status": {
            "conditions": [*pressure, condition("Ready", ready)],
            "addresses": [{"type": "InternalIP", "address": NODES[name]},
                          {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": kubelet, "containerRuntimeVersion": runtime},
            "allocatable": {"cpu": "2", "memory": "3900Mi"},
        },
    }  # fmt: skip


def healthy_nodes() -> list[dict[str, Any]]:
    cp = "k8s-cp-1"
    return [
        node(cp, taints=[{"key": v.CONTROL_PLANE_TAINT[0], "effect": "NoSchedule"}]),
        node("k8s-worker-1"),
        node("k8s-worker-2"),
    ]


RUNTIMES = dict.fromkeys(NODES, "2.2.9")


# False pass 1: kubectl top nodes with a node that has no metrics.
def test_top_nodes_needs_numbers_for_every_node() -> None:
    assert v.top_nodes(text("top-nodes-healthy.txt"), NODES) == []
    broken = text("top-nodes-one-without-metrics.txt")
    old_check = {line.split()[0] for line in broken.splitlines()} >= set(NODES)
    assert old_check, "the old check accepted this output"
    assert v.top_nodes(broken, NODES) == [
        "k8s-worker-2: no metrics (<unknown> <unknown> <unknown> <unknown>); "
        "is its serving CSR approved?"
    ]
    assert v.top_nodes("", ["k8s-cp-1"]) == ["k8s-cp-1: not listed by kubectl top nodes"]


# False pass 4: chrony running is not chrony synchronised.
def test_chrony_must_be_synchronised_and_near_ntp() -> None:
    assert v.chrony_tracking(text("chronyc-tracking-synchronised.txt")) == []
    assert v.chrony_tracking(text("chronyc-tracking-not-synchronised.txt")) == [
        "chrony is not synchronised (Leap status: Not synchronised)"
    ]
    assert v.chrony_tracking(text("chronyc-tracking-far-off.txt")) == [
        "clock 2.718 s fast of NTP time (max 0.5 s)"
    ]


def test_clock_skew_beyond_the_round_trip_is_flagged() -> None:
    close = {"a": (100.0, 100.2, 100.4), "b": (101.0, 101.3, 101.4)}
    assert v.clock_skew(close) == []
    # b reads 3 s ahead with a 0.4 s round trip: no reading order explains that.
    assert v.clock_skew({**close, "b": (101.0, 104.2, 101.4)}) == [
        "clocks of a and b differ by more than 2.6 s"
    ]
    # A slow observer widens the bound instead of failing a healthy node.
    assert v.clock_skew({**close, "b": (101.0, 103.0, 105.0)}) == []


def test_nodes_ready_on_the_pinned_versions() -> None:
    assert v.nodes(healthy_nodes(), NODES, "1.36.9", RUNTIMES) == []
    old = [node("k8s-cp-1", runtime="containerd://1.7.28", kubelet="v1.36.3"),
           node("k8s-worker-1", ready="Unknown")]  # fmt: skip
    assert v.nodes(old, NODES, "1.36.9", RUNTIMES) == [
        "k8s-worker-2: not registered",
        "k8s-cp-1: kubelet v1.36.3, want v1.36.9",
        "k8s-cp-1: runtime containerd://1.7.28, want containerd://2.2.9",
        "k8s-worker-1: not Ready",
    ]


def test_nodes_schedulable_without_pressure_or_stray_taints() -> None:
    assert v.schedulable(healthy_nodes(), ["k8s-cp-1"]) == []
    taint = {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"}
    worker = node("k8s-worker-1", unschedulable=True, taints=[taint])
    worker["status"]["conditions"][1] = condition("DiskPressure", "True")
    assert v.schedulable([worker], ["k8s-cp-1"]) == [
        "k8s-worker-1: cordoned (kubectl uncordon k8s-worker-1)",
        "k8s-worker-1: unexpected taint node.kubernetes.io/disk-pressure:NoSchedule",
        "k8s-worker-1: DiskPressure",
    ]


def csr(name: str, signer: str, *conditions: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"signerName": signer, "username": f"system:node:{name}"},
        "status": {"conditions": [condition(c, "True") for c in conditions]},
    }


def test_pending_kubelet_serving_csrs() -> None:
    items = [
        csr("csr-a", v.KUBELET_SERVING, "Approved"),
        csr("csr-b", "kubernetes.io/kube-apiserver-client-kubelet"),
        csr("csr-c", v.KUBELET_SERVING, "Denied"),
        csr("csr-d", v.KUBELET_SERVING),
    ]
    assert v.pending_serving_csrs(items) == [
        "csr-d (system:node:csr-d): kubelet-serving CSR pending"
    ]


def test_apiservices_available() -> None:
    local = {"metadata": {"name": "v1.apps"}, "status": {"conditions": [
        condition("Available", "True", reason="Local")]}}  # fmt: skip
    metrics = {"metadata": {"name": "v1beta1.metrics.k8s.io"}, "status": {"conditions": [
        condition("Available", "False", reason="MissingEndpoints")]}}  # fmt: skip
    assert v.apiservices([local]) == []
    assert v.apiservices([local, metrics]) == [
        "APIService v1beta1.metrics.k8s.io: not available (MissingEndpoints)"
    ]


def test_workloads_available_everywhere() -> None:
    coredns = {"metadata": {"namespace": "kube-system", "name": "coredns"}, "spec": {"replicas": 2},
               "status": {"availableReplicas": 2, "updatedReplicas": 2}}  # fmt: skip
    flannel = {"metadata": {"namespace": "kube-flannel", "name": "kube-flannel-ds"},
               "status": {"desiredNumberScheduled": 3, "numberAvailable": 3,
                          "updatedNumberScheduled": 3, "numberMisscheduled": 0}}  # fmt: skip
    assert v.workloads([coredns], [flannel]) == []
    metrics = {"metadata": {"namespace": "kube-system", "name": "metrics-server"},
               "spec": {"replicas": 1}, "status": {"updatedReplicas": 1}}  # fmt: skip
    proxy = {"metadata": {"namespace": "kube-system", "name": "kube-proxy"},
             "status": {"desiredNumberScheduled": 3, "numberAvailable": 2,
                        "updatedNumberScheduled": 3}}  # fmt: skip
    assert v.workloads([metrics], [proxy]) == [
        "deployment kube-system/metrics-server: 0/1 available, 1/1 updated",
        "daemonset kube-system/kube-proxy: 2/3 available, 3/3 updated, 0 misscheduled",
    ]


# False pass 5: through the VIP, /readyz answers from any API server; the scheduler and
# controller manager were never looked at.
def test_static_pods_ready_on_every_control_plane() -> None:
    planes = ["k8s-cp-1", "k8s-cp-2"]

    def pod(name: str, ready: str = "True") -> dict[str, Any]:
        return {"metadata": {"name": name}, "status": {"conditions": [condition("Ready", ready)]}}

    healthy = [pod(f"{c}-{p}") for p in planes for c in v.CONTROL_PLANE_COMPONENTS]
    assert v.static_pods(healthy, planes) == []
    crashing = [p for p in healthy if p["metadata"]["name"] != "kube-scheduler-k8s-cp-2"]
    crashing.append(pod("kube-scheduler-k8s-cp-2", "False"))
    # The old check, `kubectl get --raw /readyz` through the VIP, said "ok" here: cp-1 answered.
    assert v.static_pods(crashing, planes) == ["kube-scheduler on k8s-cp-2: not Ready"]
    assert v.static_pods(healthy[:3], planes) == [
        f"{c} on k8s-cp-2: no pod" for c in v.CONTROL_PLANE_COMPONENTS
    ]


def certificate(ips: list[str], names: list[str], days: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    now = datetime.now(UTC)
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(Encoding.PEM)


def test_serving_certificate_names_every_endpoint_and_is_not_expiring() -> None:
    # kubeadm's SANs (pkiutil GetAPIServerAltNames): node name, kubernetes.*, the service IP,
    # the advertise address, the control-plane endpoint (here a VIP).
    ips = ["10.96.0.1", "10.10.0.11", "10.10.0.10"]
    names = ["k8s-cp-1", "kubernetes", "kubernetes.default.svc.cluster.local"]
    now = datetime.now(UTC)
    assert v.serving_certificate(certificate(ips, names, 365), ips, names, now, 30) == []
    short = certificate(ips[:2], names, 10)
    problems = v.serving_certificate(short, ips, names, now, 30)
    assert problems[0] == "certificate lacks IP SAN 10.10.0.10"
    assert problems[1].startswith("certificate expires ") and "days left" in problems[1]


def test_calico_components_available_and_pool_is_the_pod_subnet() -> None:
    status = [{"metadata": {"name": n}, "status": {"conditions": [condition("Available", "True")]}}
              for n in ("calico", "apiserver", "ippools")]  # fmt: skip
    pool = [{"metadata": {"name": "default-ipv4-ippool"}, "spec": {"cidr": "10.244.0.0/16"}}]
    assert v.calico(status, pool, "10.244.0.0/16") == []
    status[1]["status"]["conditions"] = [condition("Available", "False")]
    stock = [{"metadata": {"name": "default-ipv4-ippool"}, "spec": {"cidr": "192.168.0.0/16"}}]
    assert v.calico(status, stock, "10.244.0.0/16") == [
        "tigerastatus apiserver: not Available",
        "IP pools ['192.168.0.0/16'], want [10.244.0.0/16]",
    ]
    assert v.calico([], pool, "10.244.0.0/16") == [
        "no tigerastatus objects: the operator reports nothing"
    ]


# False pass 2: the CNI's DaemonSet ready everywhere says nothing about traffic between nodes.
def test_probes_every_pair_and_the_right_answer() -> None:
    expected = {
        src: {f"pod@{dst}": dst for dst in NODES if dst != src} | {"svc": None} for src in NODES
    }

    def answers(src: str, broken: str = "") -> str:
        lines = [f"pod@{dst} 0 {dst}" for dst in NODES if dst != src and dst != broken]
        lines += [f"pod@{broken} 1 wget: download timed out"] if broken and broken != src else []
        return "\n".join([*lines, "svc 0 k8s-worker-1"])

    assert v.probes({src: answers(src) for src in NODES}, expected) == []
    daemonset_status = {"desiredNumberScheduled": 3, "numberReady": 3}
    old_check = daemonset_status["numberReady"] == len(NODES)  # VXLAN to worker-2 blocked
    assert old_check
    broken = {src: answers(src, broken="k8s-worker-2") for src in NODES}
    broken["k8s-worker-1"] = broken["k8s-worker-1"].replace("svc 0 k8s-worker-1", "")
    broken["k8s-cp-1"] = broken["k8s-cp-1"].replace("pod@k8s-worker-1 0 k8s-worker-1",
                                                    "pod@k8s-worker-1 0 k8s-worker-2")  # fmt: skip
    assert v.probes(broken, expected) == [
        "k8s-cp-1 -> pod@k8s-worker-1: answered 'k8s-worker-2', want 'k8s-worker-1'",
        "k8s-cp-1 -> pod@k8s-worker-2: failed (1)",
        "k8s-worker-1 -> pod@k8s-worker-2: failed (1)",
        "k8s-worker-1 -> svc: failed (no report)",
    ]


def test_dns_answer_is_read_after_the_server_lines() -> None:
    assert v.dns_answer(text("nslookup-answered.txt"), "10.96.0.1")
    # The server's own address must not count as the answer.
    assert not v.dns_answer(text("nslookup-nxdomain.txt"), "10.96.0.10")
    assert not v.dns_answer(text("nslookup-answered.txt"), "10.96.0.10")


# False pass 3: a gpu_nodes host without a GPU, and capacity the plugin cannot hand out.
def test_gpu_nodes_must_have_and_offer_their_gpus() -> None:
    gpu = node("k8s-worker-1")
    gpu["status"]["allocatable"]["nvidia.com/gpu"] = "1"
    assert v.gpus([gpu], {"k8s-worker-1": 1}) == []
    assert v.gpus([gpu], {"k8s-worker-1": 1, "k8s-worker-2": 0}) == [
        "k8s-worker-2: in gpu_nodes but no NVIDIA device on its PCI bus"
    ]
    unhealthy = node("k8s-worker-1")
    unhealthy["status"]["capacity"] = {"nvidia.com/gpu": "1"}
    unhealthy["status"]["allocatable"]["nvidia.com/gpu"] = "0"
    old_check = int(unhealthy["status"]["capacity"]["nvidia.com/gpu"]) == 1
    assert old_check
    assert v.gpus([unhealthy], {"k8s-worker-1": 1}) == [
        "k8s-worker-1: allocatable nvidia.com/gpu 0, want 1"
    ]


@pytest.mark.parametrize(("addresses", "problems"), [
    (["10.244.1.5", "10.244.2.7"], []),
    (["10.244.1.5", "172.17.0.2"], ["172.17.0.2 is outside 10.244.0.0/16"]),
])  # fmt: skip
def test_pod_addresses_in_the_pod_network(addresses: list[str], problems: list[str]) -> None:
    assert v.in_network(addresses, "10.244.0.0/16") == problems


@pytest.mark.parametrize(("installed", "reported"), [
    ("v2.2.9", "2.2.9"),  # a release build's `containerd --version`
    ("1.6.20~ds1", "1.6.20"),  # Debian's package: generic parse, numbers only
    ("v2.1.0-rc.1", "2.1.0-rc.1"),
])  # fmt: skip
def test_runtime_version_as_the_kubelet_reports_it(installed: str, reported: str) -> None:
    assert v.cri_version(installed) == reported
