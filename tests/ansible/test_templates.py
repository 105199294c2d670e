"""The core roles' templates rendered through Ansible for a 1-node and a 3+3-node inventory.

Nothing here can boot kubelet, so the rendered files carry the proof: every address is the node's
private one (never VirtualBox's NAT address), the pod network is the same in kubeadm and the CNI,
runc uses systemd cgroups for containerd 1.x and 2.x, and every version is pinned.
"""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from _venv import REPO, run

from labctl import versions

RENDER = Path(__file__).resolve().parent / "playbooks" / "render.yml"
# versions first: the pins every role depends on (roles/versions, a link to versions.yml)
ROLES = ["versions", "common", "containerd", "kubernetes", "control_plane", "node", "cni"]
# Two ansible-playbook runs (one per inventory) take several seconds.
pytestmark = pytest.mark.slow

NAT_ADDRESS = "10.0.2.15"  # VirtualBox's NAT address: the decoy every host also "has"
KUBE_VERSION = versions.get("kube_version")
CONTAINERD_VERSIONS = ["1.7.22", "2.0.5", versions.get("containerd_release_version")]
APT_PROXY = "http://192.168.56.1:3142"  # apt-cacher-ng on the host's private address
# One mirror for a room of clusters, a second registry with two, and the catch-all namespace.
MIRRORS = {
    "docker.io": ["https://mirror.example:5000"],
    "registry.k8s.io": ["https://mirror.example:5001", "http://192.168.56.1:5002"],
    "_default": ["https://mirror.example:5003"],
}
JOIN = {
    "token": "abcdef.0123456789abcdef",
    "ca_hash": "sha256:" + "0" * 64,
    "certificate_key": "f" * 64,
}


@dataclass(frozen=True)
class Cluster:
    name: str
    control_plane: dict[str, str]  # name -> k8s_node_ip
    workers: dict[str, str]
    vip: str
    pod_subnet: str
    cni: str
    private_cidr: str = "192.168.56.0/24"
    service_subnet: str = "10.96.0.0/12"

    @property
    def nodes(self) -> dict[str, str]:
        return {**self.control_plane, **self.workers}

    @property
    def first(self) -> str:
        return next(iter(self.control_plane))


SINGLE = Cluster(
    name="single",
    control_plane={"k8s-cp-1": "192.168.56.11"},
    workers={},
    vip="",
    pod_subnet="10.244.0.0/16",
    cni="flannel",
)
HA = Cluster(
    name="ha",
    control_plane={f"k8s-cp-{i}": f"192.168.56.1{i}" for i in (1, 2, 3)},
    workers={f"k8s-worker-{i}": f"192.168.56.2{i}" for i in (1, 2, 3)},
    vip="192.168.56.10",
    pod_subnet="10.32.0.0/16",
    cni="calico",
)


def role_layer() -> dict[str, Any]:
    """Every core role's defaults and vars: the lowest-precedence inventory layer."""
    merged: dict[str, Any] = {}
    for role in ROLES:
        for part in ("defaults", "vars"):
            path = REPO / "roles" / role / part / "main.yml"
            if path.exists():
                merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def sample_group_vars() -> dict[str, Any]:
    """The sample inventory's cluster-wide variables (group_vars/all)."""
    merged: dict[str, Any] = {}
    for path in sorted((REPO / "inventory/sample/group_vars/all").glob("*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def write_inventory(cluster: Cluster, root: Path) -> Path:
    host_vars = {
        name: {
            "k8s_node_ip": ip,
            # What facts say on a VirtualBox node; no template may use it.
            "ansible_default_ipv4": {"address": NAT_ADDRESS, "interface": "eth0"},
        }
        for name, ip in cluster.nodes.items()
    }
    workers = cluster.workers or cluster.control_plane  # one node is also the worker
    inventory = {
        "all": {
            "vars": role_layer(),
            "children": {
                "kube_control_plane": {"hosts": {n: host_vars[n] for n in cluster.control_plane}},
                "etcd": {"hosts": {n: None for n in cluster.control_plane}},
                "kube_node": {"hosts": {n: host_vars[n] for n in workers}},
                "k8s_cluster": {"children": {"kube_control_plane": None, "kube_node": None}},
            },
        }
    }
    cluster_vars = {
        "k8s_private_cidr": cluster.private_cidr,
        "kube_version": KUBE_VERSION,
        "kube_pod_subnet": cluster.pod_subnet,
        "kube_service_subnet": cluster.service_subnet,
        "kube_cni": cluster.cni,
        "kube_vip_address": cluster.vip,
        "kube_apiserver_port": 6443,
        "loadbalancer_port": 8443,
        "etcd_external": True,
        **{k: v for k, v in sample_group_vars().items() if k.startswith("etcd_external_")},
        "common_ntp_servers": ["ntp.example.org"],
        "common_apt_proxy": APT_PROXY,
        "control_plane_kubelet_config": {"serverTLSBootstrap": True},
        "render_containerd_versions": CONTAINERD_VERSIONS,
        "containerd_registry_mirrors": MIRRORS,
        "render_join": JOIN,
    }
    directory = root / "inventory"
    (directory / "group_vars" / "all").mkdir(parents=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (directory / "group_vars" / "all" / "cluster.yml").write_text(yaml.safe_dump(cluster_vars))
    return directory


Rendered = dict[str, dict[str, Any]]  # host -> file name (or "derived") -> content


def render(cluster: Cluster, root: Path) -> Rendered:
    """Run render.yml and collect, per host, each template's text and the derived variables."""
    inventory = write_inventory(cluster, root)
    done = run(
        "ansible-playbook", "-i", inventory, RENDER, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_FILTER_PLUGINS=":".join(map(str, sorted(REPO.glob("roles/*/filter_plugins")))),
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    tasks = {t["task"]["name"]: t["hosts"] for t in json.loads(done.stdout)["plays"][0]["tasks"]}
    rendered: Rendered = {}
    for host in cluster.nodes:
        files = dict(tasks["Render each template"][host]["msg"])
        for result in tasks["Render containerd's config for each containerd version"][host][
            "results"
        ]:
            files[f"containerd/config-{result['item']}.toml"] = result["msg"]
        for result in tasks["Render each mirrored registry's hosts.toml"][host]["results"]:
            files[f"containerd/{result['item']}/hosts.toml"] = result["msg"]
        files["derived"] = tasks[
            "Show the derived variables the tasks use (URLs, package pins, endpoints)"
        ][host]["msg"]
        rendered[host] = files
    return rendered


@pytest.fixture(scope="module", params=[SINGLE, HA], ids=lambda c: c.name)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    cluster: Cluster = request.param
    return cluster, render(cluster, tmp_path_factory.mktemp(cluster.name))


def text(out: Rendered, host: str, name: str) -> str:
    return str(out[host][name])


def kubeadm_docs(out: Rendered, host: str) -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all(text(out, host, "control_plane/kubeadm-config.yaml"))
    return {d["kind"]: d for d in docs}


def test_every_template_is_rendered(rendered: Any) -> None:
    cluster, out = rendered
    templates = {
        f"{path.parts[-3]}/{path.name.removesuffix('.j2')}"
        for role in ROLES
        for path in (REPO / "roles" / role / "templates").glob("*.j2")
    }
    names = {
        re.sub(r"^containerd/[^/]+/hosts\.toml$", "containerd/hosts.toml",
               re.sub(r"-\d+\.\d+\.\d+\.toml$", ".toml", name))
        for name in out[cluster.first]
    }
    assert templates <= names, f"not rendered: {sorted(templates - names)}"


def test_apt_goes_through_the_proxy_for_http_only(rendered: Any) -> None:
    cluster, out = rendered
    lines = [line for line in out[cluster.first]["common/apt-proxy.conf"].splitlines()
             if not line.startswith("//")]
    assert lines == [f'Acquire::http::Proxy "{APT_PROXY}";']


def test_no_rendered_file_holds_the_nat_address(rendered: Any) -> None:
    cluster, out = rendered
    for host in cluster.nodes:
        for name, content in out[host].items():
            assert NAT_ADDRESS not in json.dumps(content), f"{host}: {name} uses the NAT address"


def test_kubeadm_config_uses_each_control_plane_nodes_private_address(rendered: Any) -> None:
    cluster, out = rendered
    for host, ip in cluster.control_plane.items():
        docs = kubeadm_docs(out, host)
        init = docs["InitConfiguration"]
        assert init["apiVersion"] == "kubeadm.k8s.io/v1beta4"
        assert init["localAPIEndpoint"] == {"advertiseAddress": ip, "bindPort": 6443}
        assert init["nodeRegistration"]["name"] == host
        assert {"name": "node-ip", "value": ip} in init["nodeRegistration"]["kubeletExtraArgs"]


def test_cluster_configuration(rendered: Any) -> None:
    cluster, out = rendered
    docs = kubeadm_docs(out, cluster.first)
    config = docs["ClusterConfiguration"]
    assert config["kubernetesVersion"] == f"v{KUBE_VERSION}"
    assert config["networking"]["podSubnet"] == cluster.pod_subnet
    assert config["networking"]["serviceSubnet"] == cluster.service_subnet
    sans = config["apiServer"]["certSANs"]
    assert set(cluster.control_plane.values()) <= set(sans)
    if cluster.vip:
        assert config["controlPlaneEndpoint"] == f"{cluster.vip}:8443"
        assert cluster.vip in sans
    else:
        assert config["controlPlaneEndpoint"] == f"{cluster.control_plane[cluster.first]}:6443"
    etcd = config["etcd"]["external"]
    assert etcd["endpoints"] == [f"https://{ip}:2379" for ip in cluster.control_plane.values()]
    assert etcd["caFile"] == "/etc/kubernetes/pki/etcd-external/ca.crt"
    assert etcd["certFile"] == "/etc/kubernetes/pki/etcd-external/apiserver-etcd-client.crt"
    assert etcd["keyFile"] == "/etc/kubernetes/pki/etcd-external/apiserver-etcd-client.key"
    kubelet = docs["KubeletConfiguration"]
    assert kubelet["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert kubelet["cgroupDriver"] == "systemd"
    assert kubelet["serverTLSBootstrap"] is True  # control_plane_kubelet_config merged in
    assert docs["KubeProxyConfiguration"]["clusterCIDR"] == cluster.pod_subnet
    assert docs["KubeProxyConfiguration"]["mode"] == "iptables"  # lab 14 reads its chains


def test_api_server_writes_an_audit_log_without_bodies(rendered: Any) -> None:
    """kube-apiserver's --audit-* flags (k8s.io/apiserver pkg/server/options/audit.go) point at
    files inside the static pod's mounts, and the policy never logs a request or response body."""
    cluster, out = rendered
    api = kubeadm_docs(out, cluster.first)["ClusterConfiguration"]["apiServer"]
    flags = {arg["name"]: arg["value"] for arg in api["extraArgs"]}
    mounts = {v["mountPath"]: v for v in api["extraVolumes"]}
    policy_dir, _, _ = flags["audit-policy-file"].rpartition("/")
    log_dir, _, _ = flags["audit-log-path"].rpartition("/")
    assert mounts[policy_dir]["readOnly"] is True and mounts[policy_dir]["pathType"] == "Directory"
    assert mounts[log_dir]["readOnly"] is False and mounts[log_dir]["hostPath"] == log_dir
    assert int(flags["audit-log-maxsize"]) > 0 and int(flags["audit-log-maxbackup"]) > 0
    policy = yaml.safe_load(text(out, cluster.first, "control_plane/audit-policy.yaml"))
    assert policy["apiVersion"] == "audit.k8s.io/v1" and policy["kind"] == "Policy"
    levels = [rule["level"] for rule in policy["rules"]]
    assert set(levels) <= {"None", "Metadata"}, levels
    assert policy["rules"][-1] == {"level": "Metadata"}  # the catch-all: every change is logged


def test_join_configuration(rendered: Any) -> None:
    cluster, out = rendered
    endpoint = kubeadm_docs(out, cluster.first)["ClusterConfiguration"]["controlPlaneEndpoint"]
    for host, ip in cluster.nodes.items():
        join = yaml.safe_load(text(out, host, "control_plane/kubeadm-join.yaml"))
        assert join["kind"] == "JoinConfiguration"
        token = join["discovery"]["bootstrapToken"]
        assert token["apiServerEndpoint"] == endpoint
        assert token["token"] == JOIN["token"]
        assert token["caCertHashes"] == [JOIN["ca_hash"]]
        assert {"name": "node-ip", "value": ip} in join["nodeRegistration"]["kubeletExtraArgs"]
        if host in cluster.control_plane:
            assert join["controlPlane"]["localAPIEndpoint"]["advertiseAddress"] == ip
            assert join["controlPlane"]["certificateKey"] == JOIN["certificate_key"]
        else:
            assert "controlPlane" not in join


def test_kubelet_node_ip_on_every_node(rendered: Any) -> None:
    cluster, out = rendered
    for host, ip in cluster.nodes.items():
        line = text(out, host, "kubernetes/kubelet.default").strip().splitlines()[-1]
        assert line.startswith("KUBELET_EXTRA_ARGS=")
        assert f"--node-ip={ip}" in line.split("=", 1)[1].strip('"').split()


def test_hosts_file_lists_every_node_at_its_private_address(rendered: Any) -> None:
    cluster, out = rendered
    for host in cluster.nodes:
        lines = text(out, host, "common/hosts").split("\n")
        assert sorted(line for line in lines if line) == sorted(
            f"{ip} {name}" for name, ip in cluster.nodes.items()
        )


def containerd_config(rendered: Any, version: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config.toml rendered for containerd `version`, and its plugins table."""
    cluster, out = rendered
    config = tomllib.loads(text(out, cluster.first, f"containerd/config-{version}.toml"))
    return config, config["plugins"]


@pytest.mark.parametrize("version", CONTAINERD_VERSIONS)
def test_containerd_config_uses_systemd_cgroups(rendered: Any, version: str) -> None:
    config, plugins = containerd_config(rendered, version)
    if version.startswith("1."):
        assert config["version"] == 2
        cri = plugins["io.containerd.grpc.v1.cri"]
        sandbox = cri["sandbox_image"]
    else:
        assert config["version"] == 3
        cri = plugins["io.containerd.cri.v1.runtime"]
        sandbox = plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"]
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is True
    assert sandbox == "registry.k8s.io/pause:3.10.2"  # kubeadm 1.36/1.37's pause
    # nvidia-ctk writes its runtime to a drop-in instead of rewriting this file.
    assert config["imports"] == ["/etc/containerd/conf.d/*.toml"]
    # bin_dir became bin_dirs in 2.1 and was removed in 2.3.
    if version in ("1.7.22", "2.0.5"):
        assert cri["cni"]["bin_dir"] == "/opt/cni/bin"
    else:
        assert cri["cni"]["bin_dirs"] == ["/opt/cni/bin", "/usr/local/libexec/cni"]
        assert "bin_dir" not in cri["cni"]


@pytest.mark.parametrize("version", CONTAINERD_VERSIONS)
def test_containerd_config_reads_registry_hosts(rendered: Any, version: str) -> None:
    """The CRI registry's config_path, in the plugin table of the config version written."""
    _, plugins = containerd_config(rendered, version)
    if version.startswith("1."):
        registry = plugins["io.containerd.grpc.v1.cri"]["registry"]
        assert "io.containerd.cri.v1.images" not in plugins
    else:
        registry = plugins["io.containerd.cri.v1.images"]["registry"]
        assert "io.containerd.grpc.v1.cri" not in plugins
    # config_path only: the deprecated mirrors/configs tables are an error beside it.
    assert registry == {"config_path": "/etc/containerd/certs.d"}


def test_registry_mirrors_hosts_toml(rendered: Any) -> None:
    cluster, out = rendered
    servers = {"docker.io": "https://registry-1.docker.io",
               "registry.k8s.io": "https://registry.k8s.io"}
    for host in cluster.nodes:
        for registry, endpoints in MIRRORS.items():
            rendered_text = text(out, host, f"containerd/{registry}/hosts.toml")
            hosts = tomllib.loads(rendered_text)
            # The marker the cleanup looks for, on the second line (the first is ansible_managed).
            marker = rendered_text.splitlines()[1]
            assert marker == "# Written by the containerd role from containerd_registry_mirrors"
            assert hosts.get("server") == servers.get(registry), registry  # _default: none
            assert list(hosts["host"]) == endpoints  # tried in the listed order
            for endpoint in endpoints:
                assert hosts["host"][endpoint] == {"capabilities": ["pull", "resolve"]}
            assert set(hosts) <= {"server", "host"}
    assert out[cluster.first]["derived"]["_containerd_registry_files"] == [
        f"/etc/containerd/certs.d/{r}/hosts.toml" for r in sorted(MIRRORS)
    ]


def test_pod_network_matches_kubeadm(rendered: Any) -> None:
    cluster, out = rendered
    pod_subnet = kubeadm_docs(out, cluster.first)["ClusterConfiguration"]["networking"]["podSubnet"]
    net_conf = json.loads(text(out, cluster.first, "cni/flannel-net-conf.json"))
    assert net_conf["Network"] == pod_subnet
    calico = {
        d["kind"]: d
        for d in yaml.safe_load_all(text(out, cluster.first, "cni/calico-custom-resources.yaml"))
    }
    network = calico["Installation"]["spec"]["calicoNetwork"]
    assert [pool["cidr"] for pool in network["ipPools"]] == [pod_subnet]
    assert network["nodeAddressAutodetectionV4"] == {"cidrs": [cluster.private_cidr]}


def test_versions_are_pinned(rendered: Any) -> None:
    cluster, out = rendered
    derived = out[cluster.first]["derived"]
    assert derived["_kubernetes_apt_repo_url"] == "https://pkgs.k8s.io/core:/stable:/v1.37/deb/"
    assert derived["_kubernetes_apt_key_url"].endswith("/v1.37/deb/Release.key")
    assert derived["_kubernetes_package_specs"] == [
        f"{p}={KUBE_VERSION}-*" for p in ("kubelet", "kubeadm", "kubectl")
    ]
    release = re.compile(r"/releases/download/v\d+\.\d+\.\d+/")
    for artifact in derived["_containerd_release_artifacts"]:
        assert release.search(artifact["url"]), artifact["url"]
        assert artifact["checksum_url"].startswith(artifact["url"].rsplit("/", 1)[0])
    assert release.search(derived["cni_flannel_manifest_url"])
    calico = (derived["cni_calico_crds_url"], derived["cni_calico_operator_url"])
    for url in calico:
        assert re.search(r"/calico/v\d+\.\d+\.\d+/manifests/", url)
    assert [u.rsplit("/", 1)[1] for u in calico] == ["operator-crds.yaml", "tigera-operator.yaml"]
    for url in (derived["cni_flannel_manifest_url"], *calico):
        assert not re.search(r"/(master|main|latest)/", url), url
    unit = text(out, cluster.first, "containerd/containerd.service")
    assert re.search(r"containerd \d+\.\d+\.\d+ ", unit)


def test_private_cidr_check_accepts_every_node(rendered: Any) -> None:
    cluster, out = rendered
    for host in cluster.nodes:
        assert out[host]["derived"]["_common_ip_in_private_cidr"] in (True, "True")


def load_flannel_filter() -> Any:
    path = REPO / "roles/cni/filter_plugins/flannel.py"
    spec = importlib.util.spec_from_file_location("cni_flannel_filter", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flannel_shaped_manifest() -> list[Any]:
    """The two objects of kube-flannel.yml the patch touches, in upstream's shape (not a copy)."""
    net_conf = {"Network": "10.244.0.0/16", "EnableNFTables": False, "Backend": {"Type": "vxlan"}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-flannel"}},
        None,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"},
            "data": {"cni-conf.json": "{}", "net-conf.json": json.dumps(net_conf)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "kube-flannel-ds", "namespace": "kube-flannel"},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "kube-flannel",
                                "args": ["--ip-masq", "--kube-subnet-mgr", "--iface=eth0"],
                                "env": [{"name": "POD_NAME", "value": "x"}],
                            }
                        ]
                    }
                }
            },
        },
    ]


def test_flannel_patch_sets_pod_network_and_private_interface(rendered: Any) -> None:
    cluster, out = rendered
    patch = load_flannel_filter().cni_flannel_patch
    net_conf = json.loads(text(out, cluster.first, "cni/flannel-net-conf.json"))
    original = flannel_shaped_manifest()
    docs = patch(original, net_conf)
    assert None not in docs
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    patched = json.loads(config["data"]["net-conf.json"])
    assert patched["Network"] == cluster.pod_subnet
    assert patched["EnableNFTables"] is False  # upstream's other settings stay
    flannel = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    container = flannel["containers"][0]
    assert container["args"] == ["--ip-masq", "--kube-subnet-mgr", "--iface=$(FLANNEL_NODE_IP)"]
    node_ip = {"name": "FLANNEL_NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}
    assert node_ip in container["env"]
    assert original[2]["data"]["net-conf.json"] != config["data"]["net-conf.json"]  # a copy
    assert patch(docs, net_conf) == docs  # patching twice changes nothing


def test_flannel_patch_names_a_changed_layout() -> None:
    from ansible.errors import AnsibleFilterError

    patch = load_flannel_filter().cni_flannel_patch
    manifest = [d for d in flannel_shaped_manifest() if d and d["kind"] != "ConfigMap"]
    with pytest.raises(AnsibleFilterError, match="no ConfigMap 'kube-flannel-cfg'"):
        patch(manifest, {"Network": "10.244.0.0/16"})
