"""A classroom on one cluster: per attendee a namespace, a ServiceAccount with a Role that allows
what the cluster labs do there and nothing cluster-wide, a ResourceQuota and LimitRange, and a
NetworkPolicy that keeps other namespaces out. Pure functions: `labctl class` applies them.

The quota is fixed here and checked against the labs: `lab_needs()` sums the requests of every
pod a lab's run creates (rendered with its defaults, plus labctl's collector pod) and of the
objects labs leave running for their next run (lab 11's model server); a test fails when a lab
no longer fits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.errors import UsageError
from labctl.k8s import manifests as m

PREFIX = "lab-"  # namespace = PREFIX + attendee
LABEL = "labctl/classroom"  # on every object `labctl class` makes: what `down` may delete
ATTENDEE_LABEL = "labctl/attendee"
ACCOUNT = "attendee"  # the ServiceAccount, Role and RoleBinding in each namespace
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 63 - len(PREFIX)

# What one attendee may hold at once. Sized from the labs (test_classroom holds every lab's
# rendered requests against it): lab 12's run (chief, 2 ps, 2 workers, 250m and 768Mi each)
# is the largest, next to what labs 11 and 16 leave running (the model server, the CronJob).
QUOTA = {
    "requests.cpu": "2",
    "requests.memory": "5Gi",
    "limits.cpu": "16",
    "limits.memory": "16Gi",
    "requests.storage": "4Gi",
    "persistentvolumeclaims": "4",
    "pods": "12",
}
# For containers that state nothing (a `kubectl run` from a README): a quota on requests and
# limits refuses pods without them, so the LimitRange supplies them.
CONTAINER_DEFAULT = {"cpu": "500m", "memory": "256Mi"}
CONTAINER_REQUEST = {"cpu": "50m", "memory": "64Mi"}

# What labctl and the labs' checks do in an attendee's namespace (test_classroom collects the
# API calls from the code and holds them against these rules).
RULES: list[dict[str, list[str]]] = [
    {"apiGroups": [""], "resources": ["pods"],
     "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},  # --kill
    {"apiGroups": [""], "resources": ["pods/exec", "pods/attach", "pods/portforward"],
     "verbs": ["create", "get"]},  # kubectl exec / run -it / port-forward in the READMEs
    {"apiGroups": [""], "resources": ["services", "configmaps", "persistentvolumeclaims"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get", "create"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["get", "list"]},
]


@dataclass(frozen=True)
class Attendee:
    name: str  # as the instructor wrote it
    slug: str  # DNS-label form: the namespace's suffix

    @property
    def namespace(self) -> str:
        return PREFIX + self.slug


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def read_names(path: Path) -> list[Attendee]:
    """One attendee per line; blank lines and `#` comments skipped. Bad input: one line each."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read the names file {path}: {exc.strerror}") from None
    seen: dict[str, str] = {}
    out = []
    for number, line in enumerate(lines, 1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        short = slug(name)
        if not short or len(short) > MAX_NAME or not NAME.match(short):
            raise UsageError(f"{path}:{number}: {name!r} gives no usable namespace name: use "
                             f"letters and digits, at most {MAX_NAME} characters")
        if short in seen:
            raise UsageError(f"{path}:{number}: {name!r} and {seen[short]!r} both become "
                             f"{PREFIX}{short}: make them differ")
        seen[short] = name
        out.append(Attendee(name, short))
    if not out:
        raise UsageError(f"{path} names no attendee: write one name per line")
    return out


def _meta(name: str, who: Attendee, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {LABEL: "true", ATTENDEE_LABEL: who.slug,
                   "app.kubernetes.io/managed-by": "labctl"},
        "annotations": {"labctl/attendee-name": who.name},
    }
    if namespace:
        meta["namespace"] = namespace
    return meta


def objects(who: Attendee, node_ips: list[str]) -> list[dict[str, Any]]:
    """Everything `labctl class up` makes for one attendee, in the order to create it.
    `node_ips`: the nodes' addresses, from which the API server's service proxy (lab 11's check,
    lab 15's TensorBoard) and the kubelets' probes reach the attendee's pods."""
    ns = who.namespace
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns, who)}
    namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "restricted"
    return [
        namespace,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(ACCOUNT, who, ns),
         "automountServiceAccountToken": False},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": _meta(ACCOUNT, who, ns), "rules": RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(ACCOUNT, who, ns),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
         "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": ns}]},
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": _meta(ACCOUNT, who, ns),
         "spec": {"hard": dict(QUOTA)}},
        {"apiVersion": "v1", "kind": "LimitRange", "metadata": _meta(ACCOUNT, who, ns),
         "spec": {"limits": [{"type": "Container", "default": dict(CONTAINER_DEFAULT),
                              "defaultRequest": dict(CONTAINER_REQUEST)}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": _meta("isolate", who, ns),
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [
             {"from": [{"podSelector": {}}]},  # its own pods: the TF tasks talk to each other
             {"from": [{"ipBlock": {"cidr": f"{ip}/32"}} for ip in sorted(node_ips)]},
         ]}},
    ]


# --- what the labs need -----------------------------------------------------------------------
def quantity(text: str | int | float) -> float:
    """A Kubernetes quantity in base units (cores, bytes)."""
    value = str(text)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
             "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix in sorted(units, key=len, reverse=True):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * units[suffix]
    return float(value)


def _pod_spec_counts(doc: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
    spec = doc.get("spec", {})
    if doc["kind"] == "Pod":
        return [(spec, 1)]
    if doc["kind"] == "Deployment":
        return [(spec["template"]["spec"], int(spec.get("replicas", 1)))]
    if doc["kind"] == "Job":
        return [(spec["template"]["spec"], int(spec.get("parallelism", 1)))]
    if doc["kind"] == "CronJob":
        job = spec["jobTemplate"]["spec"]
        return [(job["template"]["spec"], int(job.get("parallelism", 1)))]
    return []


def needs(docs: list[dict[str, Any]]) -> dict[str, float]:
    """The quota's view of a set of objects: summed requests and limits, pods, claims."""
    total = {key: 0.0 for key in QUOTA}
    for doc in docs:
        if doc["kind"] == "PersistentVolumeClaim":
            total["persistentvolumeclaims"] += 1
            total["requests.storage"] += quantity(doc["spec"]["resources"]["requests"]["storage"])
        for spec, count in _pod_spec_counts(doc):
            total["pods"] += count
            for c in spec.get("containers", []):
                resources = c.get("resources", {})
                for kind in ("requests", "limits"):
                    given = resources.get(kind) or {}
                    fallback = CONTAINER_REQUEST if kind == "requests" else CONTAINER_DEFAULT
                    for res in ("cpu", "memory"):
                        value = given.get(res) or (resources.get("limits", {}).get(res)
                                                   if kind == "requests" else None)
                        total[f"{kind}.{res}"] += count * quantity(value or fallback[res])
    return total


def fits(need: dict[str, float]) -> list[str]:
    """The quota entries `need` exceeds, as one phrase each (empty: it fits)."""
    def shown(key: str, value: float) -> str:
        return f"{value / 2**30:.2f}Gi" if key.endswith(("memory", "storage")) else f"{value:g}"

    return [f"{key} {shown(key, need[key])} > {QUOTA[key]}" for key in QUOTA
            if need[key] > quantity(QUOTA[key]) + 1e-9]


def shared(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects a run leaves for the lab's next run (labelled labctl/shared)."""
    return [d for d in docs if d["kind"] != "Namespace"
            and d["metadata"].get("labels", {}).get(m.LABEL_SHARED) == "true"]


# --- does the room fit the cluster --------------------------------------------------------------
HEADROOM = 0.9  # of the nodes' allocatable: the rest for CoreDNS, the CNI, metrics, NFS


def capacity(nodes: list[dict[str, Any]]) -> dict[str, float]:
    """Allocatable CPU and memory of the nodes that take attendees' pods (not cordoned, no
    NoSchedule taint such as a control plane's)."""
    total = {"cpu": 0.0, "memory": 0.0}
    for node in nodes:
        spec = node.get("spec", {})
        if spec.get("unschedulable") or any(t.get("effect") == "NoSchedule"
                                            for t in spec.get("taints") or []):
            continue
        for res in total:
            total[res] += quantity(node.get("status", {}).get("allocatable", {}).get(res, 0))
    return total


def room_problem(nodes: list[dict[str, Any]], attendees: int) -> str | None:
    """Why `attendees` namespaces at full quota do not fit, or None. The rule: attendees x the
    quota's requests <= HEADROOM x the schedulable nodes' allocatable, for CPU and memory."""
    have = capacity(nodes)
    for res, unit, scale in (("cpu", "CPU", 1.0), ("memory", "GiB", 2.0**30)):
        each = quantity(QUOTA[f"requests.{res}"])
        usable = HEADROOM * have[res]
        if attendees * each > usable + 1e-9:
            return (f"{attendees} attendees x {each / scale:g} {unit} = "
                    f"{attendees * each / scale:g} {unit} of requests, but the schedulable "
                    f"nodes offer {usable / scale:.1f} {unit} ({HEADROOM:.0%} of "
                    f"{have[res] / scale:.1f}): at most {int(usable // each)} attendees; add "
                    "workers or split the room")
    return None
