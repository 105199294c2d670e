"""What `make verify` decides from what the cluster printed: pure functions, no hosts.

Each takes the raw output of one command (text or parsed JSON) and returns the problems found,
one line each; an empty list is a pass. tests/verify runs them against recorded outputs of
healthy and broken clusters, shaped after the upstream sources each docstring names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from ipaddress import ip_address, ip_network
from typing import Any

from cryptography import x509

# etcd's peers warn past one second of clock drift (rafthttp/probing_status.go): each node
# within half of it of NTP keeps every pair within it.
MAX_NTP_OFFSET_S = 0.5
MAX_CLOCK_SKEW_S = 1.0
PRESSURE = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")
CONTROL_PLANE_TAINT = ("node-role.kubernetes.io/control-plane", "NoSchedule")
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
CONTROL_PLANE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def top_nodes(output: str, nodes: Iterable[str]) -> list[str]:
    """`kubectl top nodes --no-headers`: every node with numbers.

    kubectl (pkg/metricsutil/metrics_printer.go) prints a node without metrics as its name and
    `<unknown>` in each column, and exits 0 while one node has metrics.
    """
    rows = {line.split()[0]: line.split()[1:] for line in output.splitlines() if line.strip()}
    problems = []
    for node in sorted(nodes):
        values = rows.get(node)
        if values is None:
            problems.append(f"{node}: not listed by kubectl top nodes")
        elif len(values) < 4 or "<unknown>" in values:
            problems.append(
                f"{node}: no metrics ({' '.join(values)}); is its serving CSR approved?"
            )
    return problems


def chrony_tracking(output: str) -> list[str]:
    """`chronyc -n tracking` (chrony client.c): synchronised, and near NTP time.

    chronyc exits 0 whatever the state; "Leap status : Not synchronised" is the tell.
    """
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in output.splitlines())
        if value
    )
    leap = fields.get("Leap status")
    if leap != "Normal":
        return [f"chrony is not synchronised (Leap status: {leap or 'missing'})"]
    match = re.match(r"([\d.]+) seconds (slow|fast)", fields.get("System time", ""))
    if not match:
        return [f"cannot read chrony's System time from {fields.get('System time')!r}"]
    offset = float(match.group(1))
    if offset > MAX_NTP_OFFSET_S:
        return [f"clock {offset:.3f} s {match.group(2)} of NTP time (max {MAX_NTP_OFFSET_S} s)"]
    return []


def clock_skew(samples: Mapping[str, tuple[float, float, float]]) -> list[str]:
    """Clocks compared through one observer: node -> (observer before, node's clock, observer
    after). The node's offset is bounded by half the round trip either way; a node is flagged
    only when even the most favourable reading is past MAX_CLOCK_SKEW_S from the others."""
    offsets = {
        node: (clock - (before + after) / 2, (after - before) / 2)
        for node, (before, clock, after) in samples.items()
    }
    problems = []
    names = sorted(offsets)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            gap = abs(offsets[a][0] - offsets[b][0]) - offsets[a][1] - offsets[b][1]
            if gap > MAX_CLOCK_SKEW_S:
                problems.append(f"clocks of {a} and {b} differ by more than {gap:.1f} s")
    return problems


def cri_version(version: str) -> str:
    """A runtime's version as the kubelet shows it in containerRuntimeVersion: parsed by
    apimachinery's util/version, semantic if it can (no leading v), else generic, which keeps
    the numbers only (Debian's "1.6.20~ds1" shows as "1.6.20")."""
    semantic = re.match(r"^\s*v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)$", version)
    if semantic:
        return semantic.group(1)
    generic = re.match(r"^\s*v?(\d+(?:\.\d+)*)", version)
    return generic.group(1) if generic else version


def _conditions(obj: Mapping[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}


def nodes(
    items: list[dict[str, Any]],
    addresses: Mapping[str, str],
    kubelet_version: str,
    runtime_versions: Mapping[str, str],
) -> list[str]:
    """`kubectl get nodes -o json`: exactly the inventory's nodes, Ready on their private
    address, kubelet at the pin and the runtime each node's containerd reports (status.nodeInfo:
    "v<kube_version>", "containerd://<version>", kubelet nodestatus/setters.go)."""
    seen = {n["metadata"]["name"]: n for n in items}
    problems = [f"{name}: not registered" for name in sorted(set(addresses) - set(seen))]
    problems += [
        f"{name}: registered but not in the inventory" for name in set(seen) - set(addresses)
    ]
    for name in sorted(set(addresses) & set(seen)):
        status = seen[name]["status"]
        if _conditions(seen[name]).get("Ready") != "True":
            problems.append(f"{name}: not Ready")
        internal = [a["address"] for a in status.get("addresses", []) if a["type"] == "InternalIP"]
        if internal != [addresses[name]]:
            problems.append(f"{name}: InternalIP {internal}, want [{addresses[name]}]")
        info = status.get("nodeInfo", {})
        if info.get("kubeletVersion") != f"v{kubelet_version}":
            problems.append(
                f"{name}: kubelet {info.get('kubeletVersion')}, want v{kubelet_version}"
            )
        want = f"containerd://{runtime_versions.get(name)}"
        if info.get("containerRuntimeVersion") != want:
            problems.append(f"{name}: runtime {info.get('containerRuntimeVersion')}, want {want}")
    return problems


def schedulable(items: list[dict[str, Any]], control_planes: Iterable[str]) -> list[str]:
    """Not cordoned, no pressure, and no taint but kubeadm's control-plane one on control-plane
    nodes (kubeadm constants.ControlPlaneTaint)."""
    planes = set(control_planes)
    problems = []
    for node in items:
        name = node["metadata"]["name"]
        if node["spec"].get("unschedulable"):
            problems.append(f"{name}: cordoned (kubectl uncordon {name})")
        allowed = {CONTROL_PLANE_TAINT} if name in planes else set()
        for taint in node["spec"].get("taints", []):
            if (taint["key"], taint["effect"]) not in allowed:
                problems.append(f"{name}: unexpected taint {taint['key']}:{taint['effect']}")
        conditions = _conditions(node)
        problems += [f"{name}: {kind}" for kind in PRESSURE if conditions.get(kind) == "True"]
    return problems


def pending_serving_csrs(items: list[dict[str, Any]]) -> list[str]:
    """Kubelet serving CSRs neither approved nor denied: kubectl's "Pending" (certificates/v1;
    the printer looks only at which condition types exist)."""
    return [
        f"{csr['metadata']['name']} ({csr['spec'].get('username')}): kubelet-serving CSR pending"
        for csr in items
        if csr["spec"].get("signerName") == KUBELET_SERVING
        and not {"Approved", "Denied"} & set(_conditions(csr))
    ]


def apiservices(items: list[dict[str, Any]]) -> list[str]:
    """Every APIService Available (apiregistration/v1; metrics.k8s.io is the aggregated one)."""
    problems = []
    for service in items:
        conditions = {c["type"]: c for c in service.get("status", {}).get("conditions", [])}
        available = conditions.get("Available", {})
        if available.get("status") != "True":
            reason = available.get("reason", "no Available condition")
            problems.append(f"APIService {service['metadata']['name']}: not available ({reason})")
    return problems


def workloads(deployments: list[dict[str, Any]], daemonsets: list[dict[str, Any]]) -> list[str]:
    """Deployments with every replica available and updated; DaemonSets updated and available on
    every node they target (apps/v1 status fields). A DaemonSet may target no node (a GPU-only
    one on a cluster without GPUs); that every node runs the CNI and kube-proxy is checked per
    node elsewhere."""
    problems = []
    for d in deployments:
        name = f"deployment {d['metadata']['namespace']}/{d['metadata']['name']}"
        want = d["spec"].get("replicas", 1)
        have = d.get("status", {})
        if have.get("availableReplicas", 0) < want or have.get("updatedReplicas", 0) < want:
            problems.append(
                f"{name}: {have.get('availableReplicas', 0)}/{want} available, "
                f"{have.get('updatedReplicas', 0)}/{want} updated"
            )
    for ds in daemonsets:
        name = f"daemonset {ds['metadata']['namespace']}/{ds['metadata']['name']}"
        have = ds.get("status", {})
        want = have.get("desiredNumberScheduled", 0)
        counts = [have.get(k, 0) for k in ("numberAvailable", "updatedNumberScheduled")]
        if min(counts) < want or have.get("numberMisscheduled", 0):
            problems.append(
                f"{name}: {counts[0]}/{want} available, {counts[1]}/{want} updated, "
                f"{have.get('numberMisscheduled', 0)} misscheduled"
            )
    return problems


def static_pods(items: list[dict[str, Any]], control_planes: Iterable[str]) -> list[str]:
    """kubeadm's static pods Ready on every control-plane node: mirror pods named
    <component>-<node name> (kubelet config/common.go), one check per node, not through the VIP."""
    ready = {p["metadata"]["name"]: _conditions(p).get("Ready") == "True" for p in items}
    return [
        f"{component} on {node}: " + ("not Ready" if pod in ready else "no pod")
        for node in sorted(control_planes)
        for component in CONTROL_PLANE_COMPONENTS
        if not ready.get(pod := f"{component}-{node.lower()}")
    ]


def serving_certificate(
    pem: bytes, ips: Iterable[str], names: Iterable[str], now: datetime, min_days: int
) -> list[str]:
    """The API server's certificate (/etc/kubernetes/pki/apiserver.crt) names every address a
    client uses and is not about to expire (kubeadm: one year, `kubeadm certs renew`)."""
    cert = x509.load_pem_x509_certificate(pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have_ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    have_names = set(san.get_values_for_type(x509.DNSName))
    problems = [f"certificate lacks IP SAN {ip}" for ip in sorted(set(ips) - have_ips)]
    problems += [f"certificate lacks DNS SAN {n}" for n in sorted(set(names) - have_names)]
    left = cert.not_valid_after_utc - now
    if left < timedelta(days=min_days):
        problems.append(
            f"certificate expires {cert.not_valid_after_utc:%Y-%m-%d} ({left.days} days left; "
            "kubeadm certs renew all)"
        )
    return problems


def calico(
    tigerastatus: list[dict[str, Any]], ippools: list[dict[str, Any]], subnet: str
) -> list[str]:
    """Calico's operator reports every component Available (operator.tigera.io/v1 TigeraStatus)
    and the default pool is the cluster's pod subnet (spec.cidr of default-ipv4-ippool)."""
    problems = [
        f"tigerastatus {s['metadata']['name']}: not Available"
        for s in tigerastatus
        if _conditions(s).get("Available") != "True"
    ]
    if not tigerastatus:
        problems.append("no tigerastatus objects: the operator reports nothing")
    cidrs = sorted(p["spec"]["cidr"] for p in ippools if not p["spec"].get("disabled"))
    if [ip_network(c) for c in cidrs] != [ip_network(subnet)]:
        problems.append(f"IP pools {cidrs}, want [{subnet}]")
    return problems


def probes(
    results: Mapping[str, str], expected: Mapping[str, Mapping[str, str | None]]
) -> list[str]:
    """Connections tried from each node: node -> lines "<target> <exit code> <body>" printed by
    the probe loop; expected: node -> target -> the body it must answer (None: any answer).
    A target the loop never reported counts as failed."""
    problems = []
    for source in sorted(expected):
        got = {}
        for line in results.get(source, "").splitlines():
            target, _, rest = line.partition(" ")
            code, _, body = rest.partition(" ")
            got[target] = (code, body.strip())
        for target, want in expected[source].items():
            code, body = got.get(target, ("no report", ""))
            if code != "0":
                problems.append(f"{source} -> {target}: failed ({code})")
            elif want is not None and body != want:
                problems.append(f"{source} -> {target}: answered {body!r}, want {want!r}")
    return problems


def dns_answer(output: str, address: str) -> bool:
    """busybox `nslookup name [server]`: the answer (after "Name:", the server's own address
    comes before it) holds `address`."""
    answer = output.split("Name:", 1)[-1] if "Name:" in output else ""
    return address in re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", answer)


def gpus(items: list[dict[str, Any]], found: Mapping[str, int]) -> list[str]:
    """Every gpu_nodes host has a GPU, and its node offers each one as allocatable
    nvidia.com/gpu (capacity alone counts GPUs the device plugin cannot hand out)."""
    by_name = {n["metadata"]["name"]: n for n in items}
    problems = []
    for name, count in sorted(found.items()):
        if count == 0:
            problems.append(f"{name}: in gpu_nodes but no NVIDIA device on its PCI bus")
            continue
        offered = by_name.get(name, {}).get("status", {}).get("allocatable", {})
        if int(offered.get("nvidia.com/gpu", 0)) != count:
            problems.append(
                f"{name}: allocatable nvidia.com/gpu {offered.get('nvidia.com/gpu', 0)}, "
                f"want {count}"
            )
    return problems


def in_network(addresses: Iterable[str], network: str) -> list[str]:
    """Addresses (pod IPs) inside a network (kube_pod_subnet)."""
    net = ip_network(network)
    return [f"{a} is outside {network}" for a in addresses if ip_address(a) not in net]
