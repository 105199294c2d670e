"""cluster: the whole cluster working together, checked once from the first control-plane node.

Each check names the roles (stages) whose work it checks. `make verify` on a full cluster runs
them all, and a missing piece fails. With --stages, a check whose roles were not all selected is
skipped with their names, never passed: the docker provider's offline run (no kubelet) leaves
only the etcd check, which then runs for real. The decisions are tests/infra/_verdicts.py's;
traffic between nodes is test_cluster_network.py, a volume across nodes test_cluster_storage.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _verdicts as verdict
import pytest
from _infra import (
    KUBECTL,
    SETTLE_S,
    group_hosts,
    host_named,
    items,
    kubectl,
    kubectl_apply,
    kubectl_json,
    role_vars,
    skip_by_design,
    until_no_problems,
    vars_of,
    wait_pod_ended,
)
from conftest import needs
from test_nvidia_gpu import FIND_GPU

# The CNI's DaemonSet (namespace, name) for each kube_cni, as the cni role installs it.
CNI_DAEMONSETS = {
    "flannel": ("kube-flannel", "kube-flannel-ds"),
    "calico": ("calico-system", "calico-node"),
}
# Namespaces whose Deployments and DaemonSets the roles install (CNI, DNS, kube-proxy,
# metrics-server in kube-system; the provisioner's and device plugin's from their roles).
SYSTEM_NAMESPACES = ("kube-system", "kube-flannel", "calico-system", "tigera-operator")
# The serving certificate must outlive the workshop by this much (kubeadm issues one year).
CERT_MIN_DAYS = 30
GPU = "nvidia.com/gpu"


def runtime_version(host: Any) -> str:
    """containerd's own version on a node ("containerd <module> v2.3.4 <commit>"), as the
    kubelet reports it."""
    return verdict.cri_version(str(host.check_output("containerd --version").split()[2]))


def test_every_node_ready_at_the_pinned_versions(
    request: pytest.FixtureRequest, first_cp: Any, cluster_ips: dict[str, str]
) -> None:
    needs(request, "control_plane", "node", "cni")
    kube_version = str(role_vars(first_cp, "kubernetes")["kube_version"])
    runtimes = {name: runtime_version(host_named(request, name)) for name in cluster_ips}
    pin = role_vars(first_cp, "containerd")
    if pin["containerd_install_method"] == "release":
        wrong = {n: r for n, r in runtimes.items() if r != pin["containerd_release_version"]}
        assert not wrong, f"containerd not at {pin['containerd_release_version']}: {wrong}"
    until_no_problems(
        lambda: verdict.nodes(items(first_cp, "get nodes"), cluster_ips, kube_version, runtimes),
        SETTLE_S,
        "nodes not Ready at the pinned versions",
    )


def test_workers_schedulable(
    request: pytest.FixtureRequest, first_cp: Any, cluster_ips: dict[str, str]
) -> None:
    needs(request, "control_plane", "node", "cni")
    planes = group_hosts(request, "kube_control_plane")
    until_no_problems(
        lambda: verdict.schedulable(items(first_cp, "get nodes"), planes),
        SETTLE_S,
        "nodes that cannot take pods",
    )


def test_static_pods_ready_on_every_control_plane(
    request: pytest.FixtureRequest, first_cp: Any
) -> None:
    needs(request, "control_plane")
    planes = group_hosts(request, "kube_control_plane")
    until_no_problems(
        lambda: verdict.static_pods(items(first_cp, "-n kube-system get pods"), planes),
        SETTLE_S,
        "control-plane static pods not Ready",
    )


def test_system_deployments_and_daemonsets_available(
    request: pytest.FixtureRequest, first_cp: Any
) -> None:
    needs(request, "control_plane", "node", "cni", "nfs_provisioner", "metrics")
    namespaces = {
        *SYSTEM_NAMESPACES,
        role_vars(first_cp, "nfs_provisioner")["nfs_provisioner_namespace"],
        role_vars(first_cp, "nvidia_gpu")["nvidia_gpu_namespace"],
    }

    def problems() -> list[str]:
        deployments, daemonsets = (
            [
                o
                for o in items(first_cp, f"get {kind} --all-namespaces")
                if o["metadata"]["namespace"] in namespaces
            ]
            for kind in ("deployments", "daemonsets")
        )
        deployed = {o["metadata"]["name"] for o in deployments}
        missing = [f"no {n} deployment" for n in sorted({"coredns", "metrics-server"} - deployed)]
        return missing + verdict.workloads(deployments, daemonsets)

    until_no_problems(problems, SETTLE_S, "system workloads not available")


def daemonset_missing_on(host: Any, namespace: str, name: str, nodes: set[str]) -> list[str]:
    """Nodes without a Running, ready pod of the DaemonSet."""
    daemonset = kubectl_json(host, f"-n {namespace} get daemonset {name}")
    labels = daemonset["spec"]["selector"]["matchLabels"]
    selector = ",".join(f"{key}={value}" for key, value in labels.items())
    ready = {
        p["spec"].get("nodeName")
        for p in items(host, f"-n {namespace} get pods -l {selector}")
        if p["status"].get("phase") == "Running"
        and all(c["ready"] for c in p["status"].get("containerStatuses", [{"ready": False}]))
    }
    return [f"{name}: no ready pod on {node}" for node in sorted(nodes - ready)]


def test_network_and_proxy_pods_ready_on_every_node(
    request: pytest.FixtureRequest, first_cp: Any, cluster_ips: dict[str, str]
) -> None:
    needs(request, "control_plane", "node", "cni")
    cni = vars_of(request, first_cp.backend.host)["kube_cni"]
    daemonsets = (CNI_DAEMONSETS[cni], ("kube-system", "kube-proxy"))
    until_no_problems(
        lambda: [
            problem
            for namespace, name in daemonsets
            for problem in daemonset_missing_on(first_cp, namespace, name, set(cluster_ips))
        ],
        SETTLE_S,
        f"{cni} and kube-proxy pods",
    )


def test_every_apiservice_available(request: pytest.FixtureRequest, first_cp: Any) -> None:
    needs(request, "control_plane", "node", "cni", "metrics")
    until_no_problems(
        lambda: verdict.apiservices(items(first_cp, "get apiservices")),
        SETTLE_S,
        "APIServices not available",
    )


def test_no_pending_kubelet_serving_csr(request: pytest.FixtureRequest, first_cp: Any) -> None:
    needs(request, "control_plane", "node", "kubelet_csr")
    problems = verdict.pending_serving_csrs(items(first_cp, "get csr"))
    assert not problems, "re-run the addons stage to approve them:\n" + "\n".join(problems)


def test_kubectl_top_lists_every_node_with_metrics(
    request: pytest.FixtureRequest, first_cp: Any, cluster_ips: dict[str, str]
) -> None:
    needs(request, "control_plane", "node", "cni", "metrics", "kubelet_csr")

    def problems() -> list[str]:
        with first_cp.sudo():
            out = first_cp.run(f"{KUBECTL} top nodes --no-headers")
        if out.rc != 0:
            return [f"kubectl top nodes: {out.stderr.strip()}"]
        return verdict.top_nodes(out.stdout, cluster_ips)

    # metrics-server answers once it has scraped every kubelet (about a minute after it starts).
    until_no_problems(problems, SETTLE_S, "kubectl top nodes")


def test_apiserver_certificate_names_every_endpoint(
    request: pytest.FixtureRequest, first_cp: Any
) -> None:
    needs(request, "control_plane")
    v = role_vars(first_cp, "control_plane")
    planes = group_hosts(request, "kube_control_plane")
    ips = [str(vars_of(request, n)["k8s_node_ip"]) for n in planes]
    vip = v.get("kube_vip_address")
    for name in planes:
        with host_named(request, name).sudo():
            pem = host_named(request, name).file("/etc/kubernetes/pki/apiserver.crt").content
        # Each API server's own name and address, every other one a client may be sent to.
        wanted_ips = [*ips, *([vip] if vip else [])]
        problems = verdict.serving_certificate(
            pem, wanted_ips, [name, "kubernetes.default.svc"], datetime.now(UTC), CERT_MIN_DAYS
        )
        assert not problems, f"{name}: {problems}"


def test_fetched_kubeconfig_works_from_this_machine(
    request: pytest.FixtureRequest, first_cp: Any
) -> None:
    needs(request, "control_plane")
    v = role_vars(first_cp, "control_plane")
    path = v.get("control_plane_fetch_kubeconfig_to")
    if not path:
        skip_by_design("control_plane_fetch_kubeconfig_to is not set: no kubeconfig is fetched")
    from kubernetes import client, config  # the dev venv's client, as labctl --target k8s uses

    if not Path(path).is_file():
        pytest.fail(f"{path} does not exist: the control_plane stage did not fetch it")
    api = config.new_client_from_config(config_file=path)
    version = client.VersionApi(api).get_code().git_version
    assert version == f"v{v['kube_version']}", f"{path} reaches an API server at {version}"


def test_etcd_healthy_with_tls(request: pytest.FixtureRequest, first_cp: Any) -> None:
    v = role_vars(first_cp, "etcd")
    if not v.get("etcd_external", True):
        skip_by_design(
            "etcd_external is false: kubeadm's stacked etcd, whose health test_control_plane's "
            "API server readiness covers"
        )
    needs(request, "etcd")
    members = group_hosts(request, v["etcd_group"])
    endpoints = ",".join(
        f"https://{vars_of(request, m)['k8s_node_ip']}:{v['etcd_client_port']}" for m in members
    )
    # The API server's own client certificate, against every member: what kube-apiserver
    # sees. Python's TLS, because etcdctl lives on the etcd members only. etcd answers /health
    # with {"health":"true",...} (server/etcdserver/api/etcdhttp/health.go).
    get = (
        "python3 -c 'import ssl,sys,urllib.request as u;"
        "c=ssl.create_default_context(cafile=sys.argv[2]);c.load_cert_chain(sys.argv[3],sys.argv[4]);"
        "print(u.urlopen(sys.argv[1],context=c,timeout=5).read().decode())' "
    )
    files = " ".join(v[f"etcd_external_{k}_file"] for k in ("ca", "cert", "key"))
    health = {}
    for endpoint in endpoints.split(","):
        with first_cp.sudo():
            out = first_cp.run(f"{get} {endpoint}/health {files}")
        health[endpoint] = json.loads(out.stdout).get("health") if out.rc == 0 else out.stderr
    assert health == dict.fromkeys(endpoints.split(","), "true")


def test_calico_reports_available_on_the_pod_subnet(
    request: pytest.FixtureRequest, first_cp: Any
) -> None:
    needs(request, "control_plane", "node", "cni")
    v = role_vars(first_cp, "cni")
    if v["kube_cni"] != "calico":
        skip_by_design(f"kube_cni is {v['kube_cni']}: no Calico operator to ask")
    until_no_problems(
        lambda: verdict.calico(
            items(first_cp, "get tigerastatus"),
            items(first_cp, "get ippools.crd.projectcalico.org"),
            v["kube_pod_subnet"],
        ),
        SETTLE_S,
        "Calico not available on the pod subnet",
    )


def test_gpu_nodes_have_and_offer_every_gpu(request: pytest.FixtureRequest, first_cp: Any) -> None:
    needs(request, "control_plane", "node", "nvidia_gpu")
    names = group_hosts(request, "gpu_nodes")
    if not names:
        skip_by_design("no host in gpu_nodes (GPUs are opt-in: see inventory/sample)")
    found = {name: len(host_named(request, name).run(FIND_GPU).stdout.split()) for name in names}
    until_no_problems(
        lambda: verdict.gpus(items(first_cp, "get nodes"), found),
        SETTLE_S,
        "GPU nodes without allocatable GPUs",
    )


def test_default_storage_class_is_the_nfs_provisioner(
    request: pytest.FixtureRequest, first_cp: Any
) -> None:
    needs(request, "control_plane", "nfs_provisioner")
    v = role_vars(first_cp, "nfs_provisioner")
    if not v["nfs_provisioner_default_class"]:
        skip_by_design("nfs_provisioner_default_class is false: the NFS class is not the default")
    defaults = [
        (sc["metadata"]["name"], sc["provisioner"])
        for sc in items(first_cp, "get storageclass")
        if sc["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert defaults == [
        (v["nfs_provisioner_storage_class"], "k8s-sigs.io/nfs-subdir-external-provisioner")
    ]


def test_a_pod_gets_a_gpu_and_computes_on_it(request: pytest.FixtureRequest, first_cp: Any) -> None:
    """The device plugin README's own test (nvidia k8s-device-plugin, at its pinned version):
    CUDA vector addition in a pod that asks for one GPU under the role's RuntimeClass, as lab
    10 does."""
    needs(request, "control_plane", "node", "nvidia_gpu")
    if not group_hosts(request, "gpu_nodes"):
        skip_by_design("no host in gpu_nodes (GPUs are opt-in: see inventory/sample)")
    scratch_namespace = request.getfixturevalue("scratch_namespace")
    v = role_vars(first_cp, "nvidia_gpu")
    image = v["nvidia_gpu_smoke_image"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "verify-gpu", "namespace": scratch_namespace},
        "spec": {
            "restartPolicy": "Never",
            "runtimeClassName": v["nvidia_gpu_runtime_class"],
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "containers": [
                {
                    "name": "vectoradd",
                    "image": image,
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                }
            ],
        },
    }
    kubectl_apply(first_cp, [pod])
    wait_pod_ended(first_cp, scratch_namespace, "verify-gpu")
    logs = kubectl(first_cp, f"-n {scratch_namespace} logs verify-gpu")
    assert "Test PASSED" in logs, logs
