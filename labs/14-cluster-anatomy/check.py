"""Lab 14 check: each answer in the ConfigMap `tour` is held against what the cluster itself says.

1. audit-id          the API server's audit log on a control-plane node has that request: a
                     change to deployments/anatomy/scale in the lab's namespace, answered 200;
2. etcd-revision     the Deployment's resourceVersion, which is etcd's mod_revision of its key;
3. (controllers)     the ReplicaSet's SuccessfulCreate events cover every replica;
4. scheduled         POD=NODE: the scheduler's Scheduled event says so, and the pod runs there;
5. cgroup            that directory exists on the pod's node, is the pod's (its UID, its QoS
                     class), and its cpu.max is the quota the pod's CPU limit makes;
6. kube-proxy-chain  kube-proxy's name for the Service's chain (upstream: KUBE-SVC- and the first
                     16 base32 characters of sha256("<ns>/<svc>:<port name>" + "tcp"));
7. cni-route         the interface a node routes another node's pod IP through (read on the node);
8. dns               the Service's ClusterIP.
The node's files are read by a short-lived pod on that node (labkit.nodes), which needs an
administrator's kubeconfig, as reading etcd and a node's files does.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from labkit import checks, nodes
from labkit.checks import Run, require

APP, SERVICE, PORT_NAME = "anatomy", "anatomy", "http"
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
AUDIT_LOG = "/var/log/kubernetes/audit/audit.log"  # roles/control_plane control_plane_audit_dir
CPU_PERIOD_US = 100_000  # the kubelet's CFS period
STEPS = ("audit-id", "etcd-revision", "scheduled", "cgroup", "kube-proxy-chain", "cni-route",
         "dns")


def kube_proxy_chain(namespace: str, service: str, port_name: str, protocol: str = "TCP") -> str:
    """kube-proxy's iptables chain for one Service port (pkg/proxy/iptables/proxier.go,
    servicePortChainName and portProtoHash)."""
    digest = hashlib.sha256(f"{namespace}/{service}:{port_name}{protocol.lower()}".encode())
    return "KUBE-SVC-" + base64.b32encode(digest.digest()).decode()[:16]


def millicores(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def cpu_max(pod: dict[str, Any]) -> str:
    """cgroup v2 cpu.max the kubelet writes for a pod: quota and period in microseconds, the
    quota from the sum of its containers' CPU limits ("max" when one has none)."""
    limits = [c.get("resources", {}).get("limits", {}).get("cpu")
              for c in pod["spec"]["containers"]]
    if not all(limits):
        return f"max {CPU_PERIOD_US}"
    return f"{sum(millicores(q) for q in limits) * CPU_PERIOD_US // 1000} {CPU_PERIOD_US}"


def running(api: Any, ns: str) -> list[dict[str, Any]]:
    pods = [p for p in api.list("Pod", ns, f"app={APP}")
            if p.get("status", {}).get("phase") == "Running" and p.get("status", {}).get("podIP")
            and not p["metadata"].get("deletionTimestamp")]
    require(pods, f"no {APP} pod is running", f"`labctl run 14 --target k8s`; then "
            f"`kubectl -n {ns} get pods -o wide`")
    return pods


def check(run: Run) -> str:
    from labctl.k8s.api import Api, ClusterError

    ns = run.meta.get("namespace")
    require(run.meta.get("target") == "k8s" and ns, "this run did not use the cluster",
            "start the lab with `labctl run 14 --target k8s`")
    try:
        api = Api(run.meta.get("kubeconfig") or None)
        return tour(api, ns, str(run.meta.get("image")))
    except ClusterError as err:
        raise checks.Failed(f"cannot ask the cluster: {err}", "is it up? (`vagrant status`)")\
            from None


def tour(api: Any, ns: str, image: str) -> str:
    answers = (api.read("ConfigMap", "tour", ns) or {}).get("data") or {}
    missing = [step for step in STEPS if not str(answers.get(step, "")).strip()]
    require(not missing, f"no answer yet for {', '.join(missing)}",
            f"follow the README's steps; each ends with `answer {missing[0] if missing else ''} "
            "VALUE`")
    answer = {k: str(v).strip() for k, v in answers.items()}
    deploy = api.read("Deployment", APP, ns)
    require(deploy, f"the Deployment {APP} is gone", "`labctl run 14 --target k8s`")
    pods = running(api, ns)
    svc = api.read("Service", SERVICE, ns)
    require(svc, f"the Service {SERVICE} is gone", "`labctl run 14 --target k8s`")

    # What each node must show, asked once per node.
    planes = [n["metadata"]["name"] for n in api.list("Node", selector=CONTROL_PLANE)]
    require(planes, "no node is labelled as a control plane",
            "the audit log lives on the control-plane nodes: "
            f"`kubectl get nodes -l {CONTROL_PLANE}`")
    scheduled_pod, _, scheduled_node = answer["scheduled"].partition("=")
    cgroup = answer["cgroup"].rstrip("/")
    owner = next((p for p in pods if f"pod{p['metadata']['uid'].replace('-', '_')}" in cgroup),
                 None)
    require(owner, f"step 5: {cgroup} is not the cgroup of a running {APP} pod",
            f"take a pod's UID from `kubectl -n {ns} get pod POD -o jsonpath='{{.metadata.uid}}'`"
            " and find the directory named after it on the pod's node")
    nodes_of = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods}
    source = pods[0]
    remote = next((p for p in pods if p["spec"]["nodeName"] != source["spec"]["nodeName"]), None)
    require(remote, f"every {APP} pod runs on {source['spec']['nodeName']}: no route to follow",
            "the lab needs two nodes that take pods (`kubectl get nodes`)")

    asks: dict[str, dict[str, list[str]]] = {node: {} for node in planes}
    for node in planes:
        asks[node]["audit"] = ["grep", AUDIT_LOG, answer["audit-id"]]
    asks.setdefault(owner["spec"]["nodeName"], {})["cpu.max"] = ["read", f"{cgroup}/cpu.max"]
    asks.setdefault(source["spec"]["nodeName"], {})["route"] = ["route", remote["status"]["podIP"]]
    seen = {node: nodes.probe(api, node, image, q) for node, q in asks.items()}

    done = [audited(seen, planes, answer["audit-id"], ns)]
    require(answer["etcd-revision"] == deploy["metadata"]["resourceVersion"],
            f"step 2: etcd-revision {answer['etcd-revision']} is not the Deployment's "
            f"mod_revision now, {deploy['metadata']['resourceVersion']}",
            "read it again with etcdctl (the Deployment changes when it is scaled or rolled out)")
    done.append(f"etcd revision {answer['etcd-revision']}")
    done.append(created(api, ns, deploy))
    done.append(scheduler(api, ns, scheduled_pod, scheduled_node, nodes_of))

    qos = owner["status"].get("qosClass", "").lower()
    require(f"kubepods-{qos}" in cgroup or qos == "guaranteed",
            f"step 5: {cgroup} is not under the {qos} QoS slice", "look under kubepods-burstable")
    found = seen[owner["spec"]["nodeName"]]["cpu.max"]
    require(found is not None, f"step 5: {cgroup}/cpu.max does not exist on "
            f"{owner['spec']['nodeName']}", "copy the directory's full path, /sys/fs/cgroup/…")
    require(found.strip() == cpu_max(owner),
            f"step 5: cpu.max there reads {found.strip()!r}, not {cpu_max(owner)!r}",
            "is that the pod's own directory, not a container's below it?")
    done.append(f"cgroup cpu.max {found.strip()}")

    chain = kube_proxy_chain(ns, SERVICE, PORT_NAME)
    require(answer["kube-proxy-chain"] == chain,
            f"step 6: {answer['kube-proxy-chain']} is not the Service's chain", "`sudo iptables "
            f"-t nat -L KUBE-SERVICES -n | grep {ns}/{SERVICE}` on any node")
    done.append(chain)

    route = seen[source["spec"]["nodeName"]]["route"]
    require(answer["cni-route"] == route,
            f"step 7: {source['spec']['nodeName']} routes {remote['status']['podIP']} through "
            f"{route}, not {answer['cni-route']}",
            f"`ip route get {remote['status']['podIP']}` on {source['spec']['nodeName']}")
    done.append(f"pod traffic over {route}")

    require(answer["dns"] == svc["spec"]["clusterIP"],
            f"step 8: {SERVICE} resolved to {answer['dns']}, not the ClusterIP "
            f"{svc['spec']['clusterIP']}", "resolve it from inside a pod of the namespace")
    done.append(f"{SERVICE} -> {answer['dns']}")
    return "; ".join(done)


def audited(seen: dict[str, dict[str, Any]], planes: list[str], audit_id: str, ns: str) -> str:
    records = [json.loads(line) for node in planes for line in seen[node]["audit"] or []]
    done = [r for r in records if r.get("auditID") == audit_id and r.get("stage") ==
            "ResponseComplete"]
    require(done, f"step 1: no control-plane node logged a request with auditID {audit_id}",
            "scale the Deployment again and copy the auditID of its line in " + AUDIT_LOG)
    record = done[0]
    ref = record.get("objectRef", {})
    what = (ref.get("namespace"), ref.get("resource"), ref.get("name"), ref.get("subresource"))
    require(what == (ns, "deployments", APP, "scale")
            and record.get("verb") in ("patch", "update"),
            f"step 1: request {audit_id} was {record.get('verb')} {'/'.join(map(str, what))}, "
            f"not a scale of {ns}/deployments/{APP}",
            "pick the line with \"subresource\":\"scale\"")
    code = record.get("responseStatus", {}).get("code")
    require(code == 200, f"step 1: the scale request was answered {code}", "scale it again")
    return f"audited {record['verb']} of deployments/{APP}/scale by {record['user']['username']}"


def created(api: Any, ns: str, deploy: dict[str, Any]) -> str:
    sets = api.list("ReplicaSet", ns, f"app={APP}")
    made = sum(e.get("count") or 1 for rs in sets
               for e in api.list("Event", ns, field_selector="involvedObject.name="
                                 + rs["metadata"]["name"])
               if e.get("reason") == "SuccessfulCreate")
    replicas = deploy["spec"]["replicas"]
    require(made >= replicas, f"step 3: the ReplicaSets created {made} pods for {replicas} "
            "replicas", f"events last an hour: `kubectl -n {ns} scale deployment {APP} "
            "--replicas 3` again")
    return f"the ReplicaSet controller created {made} pods"


def scheduler(api: Any, ns: str, pod: str, node: str, nodes_of: dict[str, str]) -> str:
    require(nodes_of.get(pod) == node, f"step 4: {pod} does not run on {node!r}",
            f"answer POD=NODE for a running pod: `kubectl -n {ns} get pods -o wide`")
    events = [e for e in api.list("Event", ns, field_selector=f"involvedObject.name={pod}")
              if e.get("reason") == "Scheduled"]
    require(any(f"{ns}/{pod} to {node}" in e.get("message", "") for e in events),
            f"step 4: no Scheduled event assigns {pod} to {node}",
            f"events last an hour: delete the pod (`kubectl -n {ns} delete pod {pod}`) and "
            "answer for its replacement")
    return f"scheduler put {pod} on {node}"


if __name__ == "__main__":
    checks.main(check)
