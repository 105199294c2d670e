"""`labctl doctor --cluster`: the host checks with each probe replaced into a pass and a fail
(the line and its fix), the settings read as the Vagrantfile reads them, the box cache's layout
on disk, and the cluster checks against the fake API server (nodes, the default StorageClass,
the lab images in the nodes' image lists)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from _fake_cluster import FakeApi
from _http import serving

from labctl import cli, doctor, versions
from labctl.doctor import Result, Status, cluster, local, ok
from labctl.errors import UsageError
from labctl.k8s.api import ClusterError

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
TF = versions.get("tensorflow_version")
CPU_IMAGES = (f"tensorflow/serving:{TF}", f"tensorflow/tensorflow:{TF}")
GPU_IMAGE = f"tensorflow/tensorflow:{TF}-gpu"
INSTRUCTOR = "ask the instructor to run `labctl doctor --cluster`"


BOX = versions.pins()["vagrant_boxes"]["virtualbox"]


def settings(**changes: Any) -> cluster.Settings:
    base = {"provider": "virtualbox", "control_planes": 1, "workers": 2, "memory_mib": 4096,
            "kube_version": versions.get("kube_version"), "subnet": "192.168.56.0/24",
            "arch": "amd64", "box": BOX["box"], "box_version": BOX["version"]}
    return cluster.Settings(**{**base, **changes})


def ctx(**changes: Any) -> cluster.Context:
    context = cluster.Context("kubeconfig")
    context._settings = settings(**changes)
    return context


def tools(monkeypatch: pytest.MonkeyPatch, answers: dict[str, str | None]) -> None:
    """tool_output answers by the command line's first words."""
    def output(*argv: str) -> str | None:
        return next((v for k, v in answers.items() if " ".join(argv).startswith(k)), None)

    monkeypatch.setattr(cluster, "tool_output", output)


# --- the kit's own tables: README and Vagrantfile ---------------------------------------------
def test_the_cluster_minimum_versions_are_the_readmes() -> None:
    assert (f"Vagrant {cluster._dotted(cluster.MIN_VAGRANT)} or newer with VirtualBox "
            f"{cluster._dotted(cluster.MIN_VIRTUALBOX)} or newer") in README
    assert f"VirtualBox {cluster._dotted(cluster.MIN_VIRTUALBOX_ARM64)}+, Vagrant " \
           f"{cluster._dotted(cluster.MIN_VAGRANT_ARM64)}+" in README
    vagrantfile = (REPO / "Vagrantfile").read_text()
    assert f'MIN_VAGRANT_FOR_ARCH = "{cluster._dotted(cluster.MIN_VAGRANT_ARM64)}.0"' in vagrantfile


def test_the_cluster_settings_are_the_vagrantfiles() -> None:
    """Each setting doctor reads has the Vagrantfile's environment variable, and the VirtualBox
    and libvirt ranges are the Vagrantfile's."""
    vagrantfile = (REPO / "Vagrantfile").read_text()
    declared = dict(re.findall(r'^\s+"(\w+)" => \["(K8S_\w+)", \w+\],$', vagrantfile, re.M))
    assert {k: declared.get(k) for k in cluster.SETTINGS_ENV} == cluster.SETTINGS_ENV
    assert f'VBOX_DEFAULT_RANGE = "{cluster.VBOX_DEFAULT_RANGE}"' in vagrantfile
    assert f'VBOX_NETWORKS_CONF = "{cluster.VBOX_NETWORKS_CONF}"' in vagrantfile
    assert f'LIBVIRT_MANAGEMENT = "{cluster.LIBVIRT_MANAGEMENT}"' in vagrantfile


# --- the settings ---------------------------------------------------------------------------------
@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("versions.yml", "vagrant.yml"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def test_settings_default_to_vagrant_yml_and_the_pinned_box(project: Path) -> None:
    got = cluster.read_settings(project, {})
    boxes = versions.pins()["vagrant_boxes"]["virtualbox"]
    assert (got.provider, got.control_planes, got.workers, got.memory_mib, got.subnet) == \
        ("virtualbox", 1, 2, 4096, "192.168.56.0/24")
    assert (got.box, got.box_version, got.kube_version) == \
        (boxes["box"], boxes["version"], versions.get("kube_version"))
    assert got.vm_memory_mib == 3 * 4096


def test_settings_local_file_then_environment_then_existing_machines(project: Path) -> None:
    (project / "vagrant.local.yml").write_text(
        "workers: 3\nmemory: 3072\nboxes:\n  libvirt: {box: my/box, version: '1.0'}\n")
    got = cluster.read_settings(project, {"K8S_WORKERS": "1", "K8S_PROVIDER": "libvirt"})
    assert (got.workers, got.memory_mib, got.provider, got.box, got.box_version) == \
        (1, 3072, "libvirt", "my/box", "1.0")
    # one provider's box replaced, the others' pins kept (merged one level deep)
    pinned = versions.pins()["vagrant_boxes"]["virtualbox"]["box"]
    assert cluster.read_settings(project, {}).box == pinned
    machine = project / ".vagrant" / "machines" / "k8s-cp-1" / "virtualbox"
    machine.mkdir(parents=True)
    (machine / "id").write_text("uuid")
    assert cluster.read_settings(project, {"K8S_PROVIDER": "libvirt"}).provider == "virtualbox"


def test_settings_that_the_vagrantfile_would_refuse(project: Path) -> None:
    with pytest.raises(UsageError, match="workers = 'two' is not a whole number"):
        cluster.read_settings(project, {"K8S_WORKERS": "two"})
    (project / "vagrant.local.yml").write_text("workers: [3\n")
    with pytest.raises(UsageError, match=r"vagrant\.local\.yml is not valid YAML"):
        cluster.read_settings(project, {})


def test_settings_check(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cluster.check_settings(ctx()) == ok(
        "1 control plane(s) + 2 worker(s) on virtualbox (amd64), 4096 MiB each, subnet "
        "192.168.56.0/24")
    result = cluster.check_settings(ctx(provider="docker"))
    assert result.status == Status.FAIL and "runs no kubelet" in result.detail
    broken = cluster.Context(None)
    monkeypatch.setattr(cluster, "read_settings", lambda: (_ for _ in ()).throw(
        UsageError("memory = 'x' is not a whole number")))
    assert cluster.check_settings(broken).status == Status.FAIL
    assert cluster.check_provider(broken) == doctor.skip(
        "not checked: the cluster settings are unreadable")


# --- tools ----------------------------------------------------------------------------------------
def test_vagrant(monkeypatch: pytest.MonkeyPatch) -> None:
    tools(monkeypatch, {"vagrant --version": "Vagrant 2.3.7"})
    assert cluster.check_vagrant(ctx()) == ok("Vagrant 2.3.7")
    too_old = cluster.check_vagrant(ctx(arch="arm64"))
    assert too_old.status == Status.FAIL and too_old.detail == \
        "Vagrant 2.3.7; the kit needs 2.4 or newer for arm64 VMs"
    tools(monkeypatch, {"vagrant --version": "Vagrant 2.2.19"})
    assert cluster.check_vagrant(ctx()).status == Status.FAIL
    tools(monkeypatch, {})
    missing = cluster.check_vagrant(ctx())
    assert doctor.line("vagrant", missing, 7) == (
        "FAIL  vagrant  vagrant is not installed (no `vagrant` on PATH); fix: install Vagrant "
        "from https://developer.hashicorp.com/vagrant/install")


@pytest.mark.parametrize(("answers", "changes", "status", "words"), [
    ({"VBoxManage": "7.0.14r161095"}, {}, Status.OK, "VirtualBox 7.0.14"),
    ({"VBoxManage": "7.0.14r161095"}, {"arch": "arm64"}, Status.FAIL, "needs 7.1 or newer"),
    ({"VBoxManage": "6.1.50r161033"}, {}, Status.FAIL, "needs 7.0 or newer"),
    ({"VBoxManage": "WARNING: The vboxdrv kernel module is not loaded. Either there is no module\n"
                    "         available for the current kernel (6.8.0-45-generic) or it failed "
                    "to\n7.0.14r161095"}, {}, Status.FAIL, "kernel module (vboxdrv) is not loaded"),
    ({}, {}, Status.FAIL, "VirtualBox is not installed (no `VBoxManage` on PATH)"),
    ({"virsh": "10.0.0", "vagrant plugin list": "vagrant-libvirt (0.12.2, global)"},
     {"provider": "libvirt"}, Status.OK, "libvirt 10.0.0 with the vagrant-libvirt plugin"),
    ({"virsh": "10.0.0", "vagrant plugin list": "No plugins installed."},
     {"provider": "libvirt"}, Status.FAIL, "Vagrant has no vagrant-libvirt plugin"),
    ({}, {"provider": "libvirt"}, Status.FAIL, "libvirt is not installed (no `virsh` on PATH)"),
])
def test_provider(monkeypatch: pytest.MonkeyPatch, answers: dict[str, str | None],
                  changes: dict[str, str], status: Status, words: str) -> None:
    tools(monkeypatch, answers)
    result = cluster.check_provider(ctx(**changes))
    assert result.status == status and words in result.detail, result
    assert (result.fix != "") == (status == Status.FAIL)


def test_the_tool_probe_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "VBoxManage"
    fake.write_text("#!/bin/sh\necho 7.1.4r165100\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert cluster.tool_output("VBoxManage", "--version") == "7.1.4r165100"
    assert cluster.tool_output("no-such-tool-here", "--version") is None


@pytest.mark.parametrize(("cpuinfo", "kvm", "changes", "status", "words"), [
    ("flags\t\t: fpu vme sse2 vmx avx\n", False, {}, Status.OK, "VT-x (vmx)"),
    ("flags\t\t: fpu svm avx\n", False, {}, Status.OK, "AMD-V (svm)"),
    ("flags\t\t: fpu avx\n", True, {}, Status.FAIL, "no vmx or svm flag"),
    ("flags\t\t: fpu avx\n", True, {"provider": "libvirt"}, Status.OK, "/dev/kvm present"),
    ("flags\t\t: fpu vmx\n", False, {"provider": "libvirt"}, Status.FAIL, "no /dev/kvm"),
])
def test_virtualization(monkeypatch: pytest.MonkeyPatch, cpuinfo: str, kvm: bool,
                        changes: dict[str, str], status: Status, words: str) -> None:
    monkeypatch.setattr(cluster, "host", lambda: ("linux", "x86_64"))
    monkeypatch.setattr(cluster, "read_text", lambda p: cpuinfo)
    monkeypatch.setattr(cluster, "exists", lambda p: kvm)
    result = cluster.check_virtualization(ctx(**changes))
    assert result.status == status and words in result.detail, result
    if status == Status.FAIL:
        assert "VT-x/AMD-V" in result.fix


def test_virtualization_on_a_mac(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "host", lambda: ("darwin", "arm64"))
    tools(monkeypatch, {"sysctl -n kern.hv_support": "1"})
    assert cluster.check_virtualization(ctx(arch="arm64")).status == Status.OK
    tools(monkeypatch, {"sysctl -n kern.hv_support": "0"})
    assert cluster.check_virtualization(ctx(arch="arm64")).status == Status.FAIL


@pytest.mark.parametrize(("conf", "subnet", "status", "words"), [
    (None, "192.168.56.0/24", Status.OK, "inside the allowed host-only range(s) 192.168.56.0/21 "
                                         "(VirtualBox's default)"),
    (None, "192.168.63.0/24", Status.OK, "192.168.56.0/21"),
    (None, "10.10.0.0/24", Status.FAIL, "outside VirtualBox's allowed host-only range(s) "
                                        "192.168.56.0/21 (VirtualBox's default)"),
    ("# allowed\n* 10.0.0.0/8 192.168.0.0/16\n", "10.10.0.0/24", Status.OK,
     "10.0.0.0/8, 192.168.0.0/16 (/etc/vbox/networks.conf)"),
    ("* 10.0.0.0/8\n", "192.168.56.0/24", Status.FAIL, "outside"),
    (None, "192.168.48.0/20", Status.FAIL, "outside"),  # overlaps the range, not inside it
])
def test_host_only_network(monkeypatch: pytest.MonkeyPatch, conf: str | None, subnet: str,
                           status: Status, words: str) -> None:
    monkeypatch.setattr(cluster, "host", lambda: ("linux", "x86_64"))
    monkeypatch.setattr(cluster, "read_text", lambda p: conf)
    result = cluster.check_network(ctx(subnet=subnet))
    assert result.status == status and words in result.detail, result
    if status == Status.FAIL:
        assert result.fix == (f"pick a subnet inside them (K8S_SUBNET), or add `* {subnet}` to "
                              "/etc/vbox/networks.conf")


def test_libvirt_network() -> None:
    assert cluster.check_network(ctx(provider="libvirt")).status == Status.OK
    clash = cluster.check_network(ctx(provider="libvirt", subnet="192.168.121.0/24"))
    assert clash.status == Status.FAIL and "management network" in clash.detail


@pytest.mark.parametrize("layout", ["{version}/virtualbox", "{version}/amd64/virtualbox"])
def test_box_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, layout: str) -> None:
    """Vagrant's layout (box_collection.rb): boxes/NAME/VERSION/PROVIDER/metadata.json, NAME's
    `/` spelled -VAGRANTSLASH-; Vagrant 2.4 may put the architecture before the provider."""
    monkeypatch.setattr(cluster, "vagrant_home", lambda: tmp_path)
    box = (tmp_path / "boxes" / BOX["box"].replace("/", "-VAGRANTSLASH-")
           / layout.format(version=BOX["version"]))
    box.mkdir(parents=True)
    (box / "metadata.json").write_text('{"provider": "virtualbox"}')
    assert cluster.check_box(ctx()).status == Status.OK
    assert cluster.check_box(ctx(box_version="")).status == Status.OK  # any version will do
    other = cluster.check_box(ctx(box_version="202601.1.0"))
    assert other.status == Status.WARN and other.fix.startswith(
        f"vagrant box add {BOX['box']} --box-version 202601.1.0 --provider virtualbox")
    assert cluster.check_box(ctx(provider="libvirt")).status == Status.WARN


@pytest.fixture
def venue(tmp_path: Path) -> Any:
    """A bundle served by `make serve-bundle`'s own server on loopback: (its URL, its folder)."""
    from labctl import registry

    (tmp_path / "images").mkdir()
    (tmp_path / "manifest.json").write_text(json.dumps({"items": [
        {"kind": "release", "source": "https://x/y.tgz"},
        {"kind": "image", "source": "a/b:1", "error": "no such image"}]}))
    httpd = registry.server(tmp_path, registry.load(tmp_path / "images"), "127.0.0.1", 0)
    with serving(httpd) as address:
        yield f"http://{address}", tmp_path


@pytest.mark.parametrize(("mirrors", "status", "says"), [
    ({"_default": ["{url}"]}, Status.WARN, "1 of them failed to fetch"),
    ({}, Status.WARN, "containerd_registry_mirrors does not name it"),
])
def test_the_venue_bundle_is_served(monkeypatch: pytest.MonkeyPatch, venue: Any,
                                    mirrors: dict[str, list[str]], status: Status,
                                    says: str) -> None:
    url, _ = venue
    named = {k: [u.format(url=url) for u in v] for k, v in mirrors.items()}
    monkeypatch.setattr(cluster, "venue_settings", lambda: (url, named))
    result = cluster.check_bundle(ctx())
    assert result.status == status and says in result.detail, result
    assert f"{url} serves 2 item(s)" in result.detail


def test_a_venue_bundle_that_is_complete_passes(monkeypatch: pytest.MonkeyPatch,
                                                venue: Any) -> None:
    url, folder = venue
    (folder / "manifest.json").write_text(json.dumps({"items": [{"kind": "image"}]}))
    monkeypatch.setattr(cluster, "venue_settings", lambda: (url + "/", {"_default": [url]}))
    assert cluster.check_bundle(ctx()).status == Status.OK


def test_a_venue_bundle_that_does_not_answer_fails(monkeypatch: pytest.MonkeyPatch,
                                                   venue: Any) -> None:
    url, folder = venue
    (folder / "manifest.json").unlink()
    monkeypatch.setattr(cluster, "venue_settings", lambda: (url, {}))
    served = cluster.check_bundle(ctx())
    assert served.status == Status.FAIL and "serves no bundle (no manifest.json)" in served.detail
    monkeypatch.setattr(cluster, "venue_settings", lambda: ("http://127.0.0.1:9", {}))
    gone = cluster.check_bundle(ctx())
    assert gone.status == Status.FAIL and "does not answer" in gone.detail
    assert gone.fix.startswith("make serve-bundle BUNDLE=DIR BIND=ADDRESS")


def test_no_venue_bundle_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cluster.venue_settings()[0] == ""  # the kit's inventory names none
    assert cluster.check_bundle(ctx()).status == Status.SKIP


@pytest.mark.parametrize(("memory", "status"), [
    ((16000, 16384), Status.OK), ((9000, 16384), Status.WARN), ((7000, 8192), Status.FAIL)])
def test_host_memory(monkeypatch: pytest.MonkeyPatch, memory: tuple[int, int],
                     status: Status) -> None:
    monkeypatch.setattr(cluster, "memory_mib", lambda: memory)
    result = cluster.check_host_memory(ctx())
    assert result.status == status
    assert "the cluster needs 14336 MiB (3 VMs x 4096 + 2048 for this host)" in result.detail
    if status == Status.FAIL:
        assert result.fix == "a smaller cluster: ./setup-vagrant -n 1 -m 3072"


def test_host_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "home_free_gib", lambda: 40.0)
    assert cluster.check_host_disk(ctx()).status == Status.OK
    monkeypatch.setattr(cluster, "home_free_gib", lambda: 10.0)
    result = cluster.check_host_disk(ctx())
    assert result.status == Status.FAIL and "3 VMs need 18 GiB" in result.detail


def test_kubectl(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = "v" + versions.get("kube_version")
    answer = {"clientVersion": {"gitVersion": kube}, "kustomizeVersion": "v5.7.1"}
    tools(monkeypatch, {"kubectl version": json.dumps(answer)})
    assert cluster.check_kubectl(ctx()) == ok(f"kubectl {kube}")
    tools(monkeypatch, {"kubectl version": json.dumps({"clientVersion": {
        "gitVersion": "v1.32.4"}})})
    skew = cluster.check_kubectl(ctx())
    assert skew.status == Status.WARN and "more than one minor version apart" in skew.detail
    tools(monkeypatch, {})
    assert cluster.check_kubectl(ctx()).status == Status.FAIL


# --- the cluster, on the fake API server ----------------------------------------------------------
def connected(monkeypatch: pytest.MonkeyPatch, api: FakeApi) -> cluster.Context:
    monkeypatch.setattr(cluster, "make_api", lambda kubeconfig: api)
    return ctx()


def test_nodes_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeApi()
    api.add_node("node-2")
    context = connected(monkeypatch, api)
    assert cluster.check_nodes(context) == ok(
        f"2/2 nodes Ready at {api.host} (v{versions.get('kube_version')})")


def test_a_node_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeApi()
    api.add_node("k8s-worker-2", ready=False)
    result = cluster.check_nodes(connected(monkeypatch, api))
    assert result.status == Status.FAIL
    assert result.detail.endswith("1/2 nodes Ready at https://fake-apiserver:6443 (v"
                                  f"{versions.get('kube_version')}); not Ready: k8s-worker-2")
    assert result.fix.startswith("kubectl describe node k8s-worker-2")


def test_no_cluster_answers_and_the_rest_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    context = connected(monkeypatch, FakeApi(reachable=False))
    result = cluster.check_nodes(context)
    assert result.status == Status.FAIL and "cannot reach the Kubernetes API" in result.detail
    assert cluster.check_storage(context) == doctor.skip("not checked: the cluster does not answer")
    assert cluster.check_images(context).status == Status.SKIP


def test_no_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "kubeconfig", lambda: None)
    context = cluster.Context(None)
    result = cluster.check_nodes(context)
    assert result.status == Status.FAIL and result.fix.startswith("`vagrant up` writes")
    assert cluster.check_storage(context).status == Status.SKIP


def test_an_attendee_may_not_list_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A classroom kubeconfig's Role is namespaced: not a failure of the laptop."""
    api = FakeApi(forbid={("list", "Node"), ("list", "StorageClass")})
    context = connected(monkeypatch, api)
    for check in (cluster.check_nodes, cluster.check_storage, cluster.check_images):
        result = check(context)
        assert (result.status, result.fix) == (Status.WARN, INSTRUCTOR), result
        assert "RBAC: not allowed to list" in result.detail


@pytest.mark.parametrize(("classes", "default", "status", "words"), [
    (("nfs-client",), "nfs-client", Status.OK, "nfs-client is the default StorageClass"),
    (("nfs-client",), None, Status.WARN, "no StorageClass is the default"),
    (("nfs-client", "local-path"), "local-path", Status.WARN,
     "the default StorageClass is local-path"),
    (("local-path",), "local-path", Status.FAIL, "no StorageClass nfs-client"),
])
def test_storage_class(monkeypatch: pytest.MonkeyPatch, classes: tuple[str, ...],
                       default: str | None, status: Status, words: str) -> None:
    api = FakeApi(storage_classes=classes, default_class=default)
    result = cluster.check_storage(connected(monkeypatch, api))
    assert result.status == status and words in result.detail, result
    if status == Status.WARN:
        assert result.fix == ("kubectl annotate storageclass nfs-client "
                              "storageclass.kubernetes.io/is-default-class=true --overwrite")
    if status == Status.FAIL:
        assert "playbooks/storage.yml" in result.fix


def test_lab_images_on_every_node_pods_run_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control plane (tainted NoSchedule) runs no lab pod: its list does not count."""
    assert cluster.lab_images() == sorted([*CPU_IMAGES, GPU_IMAGE])  # what labctl render uses
    api = FakeApi(node_images=CPU_IMAGES)
    api.add_node("k8s-worker-2", images=CPU_IMAGES)
    api.add_node("k8s-cp-1", taints=("NoSchedule",))
    assert cluster.check_images(connected(monkeypatch, api)) == ok(
        "3 lab image(s) on each of the 2 node(s) lab pods run on")


def test_lab_images_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeApi(node_images=CPU_IMAGES)
    api.add_node("k8s-worker-2", images=CPU_IMAGES[:1])
    api.add_node("gpu-1", gpus=1, images=CPU_IMAGES)  # the CUDA image belongs here
    result = cluster.check_images(connected(monkeypatch, api))
    assert result.status == Status.WARN
    assert result.detail.startswith(f"not on the nodes yet: tensorflow/tensorflow:{TF} on "
                                    f"k8s-worker-2, {GPU_IMAGE} on gpu-1:")
    assert result.fix == cluster.IMAGES_FIX
    api.add_node("k8s-worker-2", images=CPU_IMAGES)
    api.add_node("gpu-1", gpus=1, images=(*CPU_IMAGES, GPU_IMAGE))
    assert cluster.check_images(connected(monkeypatch, api)).status == Status.OK


@pytest.mark.parametrize(("given", "runtime"), [
    (f"tensorflow/tensorflow:{TF}", f"docker.io/tensorflow/tensorflow:{TF}"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
    ("localhost:5000/lab:1", "localhost:5000/lab:1"),
])
def test_image_names_as_the_runtime_lists_them(given: str, runtime: str) -> None:
    assert cluster.normalize(given) == runtime == cluster.normalize(runtime)


# --- the command ----------------------------------------------------------------------------------
def test_doctor_cluster_exit_codes_and_json(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A healthy host and cluster: exit 0; then a cluster whose node is down: exit 1, the other
    lines unchanged."""
    monkeypatch.setattr(local, "checks", lambda: [doctor.Check("launch", lambda: ok("fine"))])
    monkeypatch.setattr(cluster, "read_settings", lambda: settings())
    tools(monkeypatch, {"vagrant --version": "Vagrant 2.4.3", "VBoxManage": "7.1.4r165100",
                        "kubectl version": json.dumps({"clientVersion": {
                            "gitVersion": "v" + versions.get("kube_version")}})})
    monkeypatch.setattr(cluster, "host", lambda: ("linux", "x86_64"))
    monkeypatch.setattr(cluster, "read_text", lambda p: "flags : vmx" if "cpuinfo" in str(p)
                        else None)
    monkeypatch.setattr(cluster, "box_cached", lambda *a: True)
    monkeypatch.setattr(cluster, "memory_mib", lambda: (20000, 32000))
    monkeypatch.setattr(cluster, "home_free_gib", lambda: 100.0)
    monkeypatch.setattr(cluster, "venue_settings", lambda: ("", {}))  # no venue bundle: SKIP
    api = FakeApi(default_class="nfs-client", node_images=(*CPU_IMAGES,))
    monkeypatch.setattr(cluster, "make_api", lambda kubeconfig: api)
    assert cli.main(["doctor", "--cluster", "--kubeconfig", "kc", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["cluster"] and doc["ready"] and doc["counts"]["ok"] == 13
    api.add_node("node-1", ready=False, images=CPU_IMAGES)
    assert cli.main(["doctor", "--cluster", "--kubeconfig", "kc"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in out[:-1]] == ["OK"] * 9 + ["SKIP", "OK", "FAIL", "OK", "OK"]
    assert out[-1].startswith("NOT READY: 1 check(s) failed (nodes)")


def test_a_broken_probe_is_a_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> Any:
        raise ClusterError("the API server at https://x:6443 rejected the credentials (401)")

    monkeypatch.setattr(cluster, "make_api", broken)
    rows = [doctor.run_one(c) for c in cluster.checks("kc") if c.name in ("nodes",
                                                                         "storage class")]
    assert [r.result.status for r in rows] == [Status.FAIL, Status.SKIP]
    assert isinstance(rows[0].result, Result) and "401" in rows[0].result.detail
