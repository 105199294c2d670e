"""`labctl doctor --cluster`: can this host build the Vagrant cluster (Vagrant, the provider,
hardware virtualization, the network, the box, memory and disk, the venue bundle when the
inventory names one), and does the cluster answer ready for the labs (nodes, storage, the lab
images already on the nodes)?

The host checks read the cluster's settings the way the Vagrantfile does (Settings below); the
cluster checks go through labctl.k8s.api.Api with the kubeconfig `labctl run --target k8s` would
use. Probes (subprocesses, files, the API) are small functions the tests replace.
"""

from __future__ import annotations

import ipaddress
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.doctor.results import Check, Result, fail, ok, skip, warn
from labctl.errors import UsageError
from labctl.labs import REPO
from labctl.rehearse.plan import VM_PROVIDERS
from labctl.rehearse.preflight import DISK_PER_VM_GIB, HOST_RESERVE_MIB

# README, The cluster, Requirements: "Vagrant 2.3 or newer with VirtualBox 7.0 or newer";
# Apple Silicon needs VirtualBox 7.1+ and arm64 VMs Vagrant 2.4+ (the Vagrantfile's
# MIN_VAGRANT_FOR_ARCH). tests/unit/test_doctor.py holds these to the README.
MIN_VAGRANT = (2, 3)
MIN_VAGRANT_ARM64 = (2, 4)
MIN_VIRTUALBOX = (7, 0)
MIN_VIRTUALBOX_ARM64 = (7, 1)
# VirtualBox 6.1.28+ (Linux, macOS) refuses host-only networks outside 192.168.56.0/21 unless
# this file lists other ranges on `* CIDR ...` lines (the Vagrantfile's vbox_ranges).
VBOX_NETWORKS_CONF = Path("/etc/vbox/networks.conf")
VBOX_DEFAULT_RANGE = "192.168.56.0/21"
LIBVIRT_MANAGEMENT = "192.168.121.0/24"  # vagrant-libvirt's NAT network (Vagrantfile)
TOOL_TIMEOUT_S = 30.0
IMAGES_FIX = (".venv/bin/ansible-playbook -i inventory/vagrant playbooks/images.yml "
              "(README: pre-pull the lab images)")
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


# --- the cluster's settings, as the Vagrantfile reads them ----------------------------------------
# Each setting the checks use and its environment variable (the Vagrantfile's SETTINGS; a test
# compares the two).
SETTINGS_ENV = {
    "control_planes": "K8S_CONTROL_PLANES",
    "workers": "K8S_WORKERS",
    "memory": "K8S_MEMORY",
    "kube_version": "K8S_VERSION",
    "subnet": "K8S_SUBNET",
    "provider": "K8S_PROVIDER",
    "arch": "K8S_ARCH",
    "box": "K8S_BOX",
    "box_version": "K8S_BOX_VERSION",
}
INTEGERS = ("control_planes", "workers", "memory")
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "arm64": "arm64", "aarch64": "arm64"}


@dataclass(frozen=True)
class Settings:
    provider: str
    control_planes: int
    workers: int
    memory_mib: int  # per VM
    kube_version: str
    subnet: str
    arch: str  # amd64 or arm64 (auto resolved)
    box: str
    box_version: str  # empty: any version

    @property
    def nodes(self) -> int:
        return self.control_planes + self.workers

    @property
    def vm_memory_mib(self) -> int:
        return self.nodes * self.memory_mib


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{path.name} is not valid YAML ({' '.join(str(exc).split())[:120]}): "
                         "fix it (`vagrant validate` says where)") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path.name} must hold a mapping of settings, like vagrant.yml")
    return data


def active_provider(root: Path, env: Mapping[str, str]) -> str | None:
    """The provider existing machines were created with (the Vagrantfile's active_provider)."""
    dotfile = root / env.get("VAGRANT_DOTFILE_PATH", ".vagrant")
    found = {p.parent.name for p in dotfile.glob("machines/*/*/id")}
    return found.pop() if len(found) == 1 else None


def read_settings(root: Path = REPO, env: Mapping[str, str] | None = None) -> Settings:
    """versions.yml's pins, vagrant.yml, vagrant.local.yml (or cluster.local.yml),
    VAGRANT_DEFAULT_PROVIDER, K8S_*, then the existing machines' provider: the Vagrantfile's
    order. UsageError, in one line, for a value it would refuse as well."""
    env = os.environ if env is None else env
    pins = _yaml(root / "versions.yml")
    cfg: dict[str, Any] = {"kube_version": pins.get("kube_version", ""),
                           "boxes": dict(pins.get("vagrant_boxes") or {})}
    local = "vagrant.local.yml" if (root / "vagrant.local.yml").is_file() else "cluster.local.yml"
    for name in ("vagrant.yml", local):
        for key, value in _yaml(root / name).items():
            if key == "boxes" and isinstance(value, dict):  # one level deep, as the Vagrantfile
                cfg["boxes"] = {**cfg["boxes"], **value}
            else:
                cfg[key] = value
    if env.get("VAGRANT_DEFAULT_PROVIDER"):
        cfg["provider"] = env["VAGRANT_DEFAULT_PROVIDER"]
    for key, var in SETTINGS_ENV.items():
        if var in env:
            cfg[key] = env[var].strip()
    cfg["provider"] = active_provider(root, env) or cfg.get("provider", "virtualbox")
    for key in INTEGERS:
        try:
            cfg[key] = int(cfg.get(key))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise UsageError(f"{key} = {cfg.get(key)!r} is not a whole number: fix it in "
                             f"vagrant.local.yml or {SETTINGS_ENV[key]}") from None
    arch = str(cfg.get("arch") or "auto")
    arch = ARCHES.get(platform.machine().lower(), platform.machine()) if arch == "auto" else arch
    box, version = str(cfg.get("box") or ""), str(cfg.get("box_version") or "")
    if not box:
        pinned = cfg["boxes"].get(cfg["provider"]) or {}
        box, version = str(pinned.get("box") or ""), str(pinned.get("version") or "")
    return Settings(str(cfg["provider"]), cfg["control_planes"], cfg["workers"], cfg["memory"],
                    str(cfg.get("kube_version") or ""), str(cfg.get("subnet") or ""), arch, box,
                    version)


# --- probes ---------------------------------------------------------------------------------------
def tool_output(*argv: str) -> str | None:
    """What a tool prints (stdout and stderr), None when it is not installed or hangs."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout + done.stderr).strip()


def read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def exists(path: Path) -> bool:
    return path.exists()


def host() -> tuple[str, str]:
    return sys.platform, platform.machine()


def vagrant_home() -> Path:
    return Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")


def memory_mib() -> tuple[int, int]:
    from labctl.doctor.local import memory_mib as local_memory

    return local_memory()


def home_free_gib() -> float:
    # Where the VMs' disks (VirtualBox VMs, the box cache) grow; the rehearsal measures the same.
    return shutil.disk_usage(Path.home()).free / 2**30


def make_api(kubeconfig: str | None) -> Any:
    from labctl.k8s.api import Api

    return Api(kubeconfig)


def kubeconfig() -> Path | None:
    """The kubeconfig labctl would use without --kubeconfig."""
    from labctl.k8s.api import kubeconfig_path

    return kubeconfig_path(None)


def lab_images() -> list[str]:
    from labctl.k8s.static import images

    return images()


def venue_settings(root: Path = REPO) -> tuple[str, dict[str, Any]]:
    """kit_mirror_url and containerd_registry_mirrors, as the Vagrant inventory sets them."""
    group_vars = root / "inventory" / "vagrant" / "group_vars" / "all"
    mirror = str(_yaml(group_vars / "downloads.yml").get("kit_mirror_url") or "")
    mirrors = _yaml(group_vars / "containerd.yml").get("containerd_registry_mirrors") or {}
    return mirror, mirrors if isinstance(mirrors, dict) else {}


def http_get(url: str) -> tuple[int, bytes] | str:
    """(status, body) of a GET, or why there was none."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=TOOL_TIMEOUT_S / 6) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, b""
    except (OSError, ValueError) as err:
        return str(getattr(err, "reason", err))


def _version(text: str | None) -> tuple[int, ...] | None:
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(g) for g in match.groups() if g is not None) if match else None


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


# --- the host -------------------------------------------------------------------------------------
class Context:
    """What several checks share: the settings, and one API connection."""

    def __init__(self, kubeconfig: str | None) -> None:
        self.kubeconfig = kubeconfig
        self._settings: Settings | None = None
        self.settings_error = ""
        self._api: Any = None
        self.api_error = ""

    def settings(self) -> Settings | None:
        if self._settings is None and not self.settings_error:
            try:
                self._settings = read_settings()
            except UsageError as exc:
                self.settings_error = str(exc)
        return self._settings

    def api(self) -> Any:
        if self._api is None and not self.api_error:
            try:
                self._api = make_api(self.kubeconfig)
            except UsageError as exc:
                self.api_error = str(exc)
        return self._api


def check_settings(ctx: Context) -> Result:
    s = ctx.settings()
    if s is None:
        return fail(f"cannot read the cluster settings: {ctx.settings_error}",
                    "fix vagrant.local.yml or the K8S_* variables (`vagrant validate` names the "
                    "problem)")
    plan = (f"{s.control_planes} control plane(s) + {s.workers} worker(s) on {s.provider} "
            f"({s.arch}), {s.memory_mib} MiB each, subnet {s.subnet}")
    if s.provider not in VM_PROVIDERS:
        return fail(f"{plan}: the {s.provider} provider runs no kubelet, so no cluster lab runs",
                    "set provider: virtualbox (or libvirt) in vagrant.local.yml, or K8S_PROVIDER")
    return ok(plan)


def _needs_settings(ctx: Context) -> Settings | Result:
    s = ctx.settings()
    return s if s is not None else skip("not checked: the cluster settings are unreadable")


def check_vagrant(ctx: Context) -> Result:
    found = _version(tool_output("vagrant", "--version"))
    install = "install Vagrant from https://developer.hashicorp.com/vagrant/install"
    if found is None:
        return fail("vagrant is not installed (no `vagrant` on PATH)", install)
    s = ctx.settings()
    need = MIN_VAGRANT_ARM64 if s is not None and s.arch == "arm64" else MIN_VAGRANT
    if found < need:
        why = " for arm64 VMs" if need == MIN_VAGRANT_ARM64 else ""
        return fail(f"Vagrant {_dotted(found)}; the kit needs {_dotted(need)} or newer{why}",
                    install)
    return ok(f"Vagrant {_dotted(found)}")


def check_provider(ctx: Context) -> Result:
    s = _needs_settings(ctx)
    if isinstance(s, Result):
        return s
    if s.provider == "virtualbox":
        text = tool_output("VBoxManage", "--version")
        install = "install VirtualBox from https://www.virtualbox.org/wiki/Downloads"
        if text is None:
            return fail("VirtualBox is not installed (no `VBoxManage` on PATH)", install)
        if "kernel module is not loaded" in text or "vboxdrv" in text:
            return fail("VirtualBox is installed but its kernel module (vboxdrv) is not loaded",
                        "sudo /sbin/vboxconfig (after installing this kernel's headers), or "
                        "reboot")
        found = _version(text.splitlines()[-1])
        need = MIN_VIRTUALBOX_ARM64 if s.arch == "arm64" else MIN_VIRTUALBOX
        if found is None or found < need:
            return fail(f"VirtualBox {text.splitlines()[-1]}; the kit needs {_dotted(need)} or "
                        "newer", install)
        return ok(f"VirtualBox {_dotted(found)}")
    if s.provider == "libvirt":
        found = _version(tool_output("virsh", "--version"))
        if found is None:
            return fail("libvirt is not installed (no `virsh` on PATH)",
                        "sudo apt-get install libvirt-daemon-system libvirt-clients, then "
                        "`vagrant plugin install vagrant-libvirt`")
        plugins = tool_output("vagrant", "plugin", "list") or ""
        if "vagrant-libvirt" not in plugins:
            return fail(f"libvirt {_dotted(found)}, but Vagrant has no vagrant-libvirt plugin",
                        "vagrant plugin install vagrant-libvirt")
        return ok(f"libvirt {_dotted(found)} with the vagrant-libvirt plugin")
    return skip(f"no VM provider to check ({s.provider})")


def check_virtualization(ctx: Context) -> Result:
    s = _needs_settings(ctx)
    if isinstance(s, Result):
        return s
    sys_platform, machine = host()
    firmware = "enable VT-x/AMD-V (Intel VT, SVM) in the firmware (BIOS/UEFI) settings"
    if sys_platform == "darwin":
        if (tool_output("sysctl", "-n", "kern.hv_support") or "").strip() == "1":
            return ok("macOS Hypervisor framework available (kern.hv_support = 1)")
        return fail("macOS reports no hardware virtualization (kern.hv_support != 1)", firmware)
    if sys_platform != "linux":
        return skip(f"cannot tell on {sys_platform}: VirtualBox will say when it starts a VM")
    kvm = exists(Path("/dev/kvm"))
    if s.provider == "libvirt" or ARCHES.get(machine.lower()) == "arm64":
        # KVM is what libvirt (and any arm64 hypervisor) runs on; /proc/cpuinfo has no vmx/svm
        # on arm64.
        if kvm:
            return ok("/dev/kvm present")
        return fail("no /dev/kvm: the kernel offers no hardware virtualization",
                    f"{firmware}, then `sudo modprobe kvm_intel` (or kvm_amd)")
    flags = set()
    for line in (read_text(Path("/proc/cpuinfo")) or "").splitlines():
        if line.startswith("flags"):
            flags |= set(line.partition(":")[2].split())
    found = [name for flag, name in (("vmx", "VT-x (vmx)"), ("svm", "AMD-V (svm)"))
             if flag in flags]
    if found:
        return ok(f"{found[0]} in /proc/cpuinfo")
    # Inside a VM the flag shows only with nested virtualization; VirtualBox 7 needs it.
    return fail("no vmx or svm flag in /proc/cpuinfo: VirtualBox cannot start a 64-bit VM"
                + (" (/dev/kvm exists, but VirtualBox does not use it)" if kvm else ""),
                f"{firmware}; in a VM, turn on nested virtualization")


def vbox_ranges() -> list[str]:
    """Host-only ranges VirtualBox allows here: networks.conf's `* CIDR ...` lines, else its
    default (the Vagrantfile's vbox_ranges)."""
    text = read_text(VBOX_NETWORKS_CONF)
    if text is None:
        return [VBOX_DEFAULT_RANGE]
    ranges = []
    for line in text.splitlines():
        if line.strip().startswith("*"):
            for item in line.split()[1:]:
                try:
                    ranges.append(str(ipaddress.IPv4Network(item, strict=False)))
                except ValueError:
                    continue
    return ranges


def check_network(ctx: Context) -> Result:
    s = _needs_settings(ctx)
    if isinstance(s, Result):
        return s
    try:
        net = ipaddress.IPv4Network(s.subnet)
    except ValueError:
        return fail(f"subnet {s.subnet!r} is not an IPv4 network like 192.168.56.0/24",
                    "set subnet: in vagrant.local.yml or K8S_SUBNET")
    if s.provider == "libvirt":
        if net.overlaps(ipaddress.IPv4Network(LIBVIRT_MANAGEMENT)):
            return fail(f"subnet {net} overlaps vagrant-libvirt's management network "
                        f"{LIBVIRT_MANAGEMENT}", "set another subnet (K8S_SUBNET)")
        return ok(f"subnet {net}, clear of libvirt's management network")
    if s.provider != "virtualbox" or host()[0] == "win32":  # Windows has no such limit
        return skip(f"no host-only range limit with {s.provider} here")
    ranges = vbox_ranges()
    where = str(VBOX_NETWORKS_CONF) if read_text(VBOX_NETWORKS_CONF) is not None else \
        "VirtualBox's default"
    if any(net.subnet_of(ipaddress.IPv4Network(r)) for r in ranges):
        return ok(f"subnet {net} inside the allowed host-only range(s) {', '.join(ranges)} "
                  f"({where})")
    return fail(f"subnet {net} is outside VirtualBox's allowed host-only range(s) "
                f"{', '.join(ranges) or 'none'} ({where}): `vagrant up` would stop",
                f"pick a subnet inside them (K8S_SUBNET), or add `* {net}` to "
                f"{VBOX_NETWORKS_CONF}")


def box_cached(home: Path, box: str, version: str, provider: str) -> bool:
    """Whether Vagrant holds the box: boxes/NAME/VERSION/PROVIDER (Vagrant 2.4+ may add an
    architecture level: VERSION/ARCH/PROVIDER), NAME with `/` spelled -VAGRANTSLASH-."""
    root = home / "boxes" / box.replace("/", "-VAGRANTSLASH-")
    versions = [root / version] if version else [p for p in root.glob("*") if p.is_dir()]
    return any((v / provider / "metadata.json").is_file()
               or any(v.glob(f"*/{provider}/metadata.json")) for v in versions)


def check_box(ctx: Context) -> Result:
    s = _needs_settings(ctx)
    if isinstance(s, Result):
        return s
    if s.provider not in VM_PROVIDERS:
        return skip(f"no box with {s.provider}")
    named = f"{s.box} {s.box_version}".strip()
    if box_cached(vagrant_home(), s.box, s.box_version, s.provider):
        return ok(f"{named} ({s.provider}) is cached in {vagrant_home()}")
    pinned = f" --box-version {s.box_version}" if s.box_version else ""
    return warn(f"{named} ({s.provider}) is not cached: the first `vagrant up` downloads it",
                f"vagrant box add {s.box}{pinned} --provider {s.provider} (ahead of the day, on "
                "a good connection)")


def check_host_memory(ctx: Context) -> Result:
    s = _needs_settings(ctx)
    if isinstance(s, Result):
        return s
    available, total = memory_mib()
    # The VMs' sum (nodes x memory, as the Vagrantfile's plan prints it) plus the rehearsal's
    # reserve for the host itself (labctl.rehearse.preflight.HOST_RESERVE_MIB).
    need = s.vm_memory_mib + HOST_RESERVE_MIB
    found = (f"{available} MiB available of {total} MiB; the cluster needs {need} MiB "
             f"({s.nodes} VMs x {s.memory_mib} + {HOST_RESERVE_MIB} for this host)")
    smaller = "a smaller cluster: ./setup-vagrant -n 1 -m 3072"
    if total < need:
        return fail(found, smaller)
    if available < need:
        return warn(found, f"close other programs (VMs already running hold theirs), or {smaller}")
    return ok(found)


def check_host_disk(ctx: Context) -> Result:
    s = _needs_settings(ctx)
    if isinstance(s, Result):
        return s
    free = home_free_gib()
    need = DISK_PER_VM_GIB * s.nodes  # the rehearsal's per-VM figure (labctl.rehearse)
    found = f"{free:.1f} GiB free under {Path.home()}; {s.nodes} VMs need {need} GiB"
    if free < need:
        return fail(found, "free some disk, or a smaller cluster (./setup-vagrant -n 1)")
    return ok(found)


def check_bundle(ctx: Context) -> Result:
    """The venue bundle the inventory names (kit_mirror_url): served, with its registry, and
    named as the registry mirror too."""
    try:
        url, mirrors = venue_settings()
    except UsageError as exc:
        return fail(str(exc), "fix the file it names")
    if not url:
        return skip("no venue bundle (kit_mirror_url is \"\"): the cluster downloads from upstream")
    url = url.rstrip("/")
    serve = "make serve-bundle BUNDLE=DIR BIND=ADDRESS on the machine that holds the bundle"
    manifest = http_get(f"{url}/manifest.json")
    if isinstance(manifest, str):
        return fail(f"the venue bundle at {url} does not answer ({manifest})", serve)
    try:
        items = json.loads(manifest[1])["items"] if manifest[0] == 200 else None
    except (ValueError, KeyError, TypeError):
        items = None
    if items is None:
        return fail(f"{url} answers ({manifest[0]}) but serves no bundle (no manifest.json)",
                    f"serve the folder `make bundle` filled: {serve}")
    registry = http_get(f"{url}/v2/")
    failed = [i for i in items if i.get("error")]
    found = f"{url} serves {len(items)} item(s)" + (f", {len(failed)} of them failed to fetch"
                                                     if failed else "")
    if isinstance(registry, str) or registry[0] != 200:
        return warn(f"{found}, but no image registry: images come from their registries", serve)
    if url not in [str(u).rstrip("/") for urls in mirrors.values() for u in urls or []]:
        return warn(f"{found} and its images, but containerd_registry_mirrors does not name it: "
                    "images come from their registries",
                    f'containerd_registry_mirrors: {{_default: ["{url}"]}} in '
                    "inventory/vagrant/group_vars/all/containerd.yml")
    if failed:
        return warn(f"{found}: the cluster downloads those from upstream",
                    "make bundle again on a connected machine (manifest.json names each error)")
    return ok(f"{found} and its images, named as the registry mirror")


def check_kubectl(ctx: Context) -> Result:
    text = tool_output("kubectl", "version", "--client", "-o", "json")
    install = "install kubectl: https://kubernetes.io/docs/tasks/tools/"
    if text is None:
        return fail("kubectl is not installed: the cluster labs' pages use it", install)
    try:
        client = str(json.loads(text[text.index("{"):])["clientVersion"]["gitVersion"])
    except (ValueError, KeyError, TypeError):
        return warn(f"kubectl answers, but not with a version: {text.splitlines()[0][:80]}",
                    install)
    s = ctx.settings()
    server = _version(s.kube_version if s else "")
    have = _version(client)
    if server and have and abs(have[1] - server[1]) > 1:
        # kubectl is supported within one minor version of the API server (version skew policy).
        return warn(f"kubectl {client}, the cluster runs Kubernetes {s.kube_version if s else ''}"
                    ": more than one minor version apart",
                    f"install kubectl v1.{server[1]}: https://kubernetes.io/docs/tasks/tools/")
    return ok(f"kubectl {client}")


# --- the cluster ----------------------------------------------------------------------------------
def _forbidden(exc: Exception) -> bool:
    from labctl.k8s.api import Forbidden

    return isinstance(exc, Forbidden)


def _ready(node: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in node.get("status", {}).get("conditions") or [])


def check_nodes(ctx: Context) -> Result:
    from labctl.k8s.api import ClusterError

    if ctx.kubeconfig is None and kubeconfig() is None:
        ctx.api_error = "no kubeconfig"
        return fail("no kubeconfig: not in --kubeconfig, $KUBECONFIG, ./kubeconfig or "
                    "~/.kube/config", "`vagrant up` writes ./kubeconfig; or pass --kubeconfig")
    api = ctx.api()
    if api is None:  # labctl's message names the fix (a missing client, a broken kubeconfig)
        return fail(ctx.api_error, "")
    try:
        nodes = api.list("Node")
        version = api.version()
    except ClusterError as exc:
        if _forbidden(exc):
            return warn(str(exc), "ask the instructor to run `labctl doctor --cluster`")
        ctx.api_error = str(exc)
        return fail(str(exc), "`vagrant status`; `vagrant up` starts stopped VMs")
    if not nodes:
        return fail(f"{api.host} answers but has no nodes", "`vagrant provision`")
    down = [n["metadata"]["name"] for n in nodes if not _ready(n)]
    found = f"{len(nodes) - len(down)}/{len(nodes)} nodes Ready at {api.host} ({version})"
    if down:
        return fail(f"{found}; not Ready: {', '.join(down)}",
                    f"kubectl describe node {down[0]}; a node that never joined: "
                    "`vagrant provision`")
    return ok(found)


def _answering(ctx: Context) -> Any:
    return ctx.api() if not ctx.api_error else None


def check_storage(ctx: Context) -> Result:
    from labctl.k8s.api import ClusterError
    from labctl.k8s.manifests import STORAGE_CLASS

    api = _answering(ctx)
    if api is None:
        return skip("not checked: the cluster does not answer")
    try:
        classes = api.list("StorageClass")
    except ClusterError as exc:
        if _forbidden(exc):
            return warn(str(exc), "ask the instructor to run `labctl doctor --cluster`")
        return fail(str(exc), "is the cluster up? `kubectl get storageclass`")
    names = [c["metadata"]["name"] for c in classes]
    default = [c["metadata"]["name"] for c in classes
               if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS) == "true"]
    if STORAGE_CLASS not in names:
        return fail(f"no StorageClass {STORAGE_CLASS}, which the labs' volumes ask for (classes: "
                    f"{', '.join(names) or 'none'})",
                    "provision it: .venv/bin/ansible-playbook -i inventory/vagrant "
                    "playbooks/storage.yml")
    annotate = (f"kubectl annotate storageclass {STORAGE_CLASS} "
                f"{DEFAULT_CLASS}=true --overwrite")
    if not default:
        return warn(f"{STORAGE_CLASS} exists but no StorageClass is the default", annotate)
    if STORAGE_CLASS not in default:
        return warn(f"the default StorageClass is {', '.join(default)}, not {STORAGE_CLASS}",
                    annotate)
    return ok(f"{STORAGE_CLASS} is the default StorageClass")


def normalize(image: str) -> str:
    """An image reference as the container runtime names it: Docker Hub's `tensorflow/x:1`
    is `docker.io/tensorflow/x:1`, a bare `busybox` is `docker.io/library/busybox`."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image
    path = image if rest else f"library/{image}"
    return f"docker.io/{path}"


def _schedulable(node: dict[str, Any]) -> bool:
    """Whether lab pods may land here: not cordoned, no NoSchedule/NoExecute taint (the
    control plane's)."""
    spec = node.get("spec") or {}
    return not spec.get("unschedulable") and not any(
        t.get("effect") in ("NoSchedule", "NoExecute") for t in spec.get("taints") or [])


def _gpus(node: dict[str, Any]) -> int:
    from labctl.k8s.manifests import GPU_RESOURCE

    return int((node.get("status", {}).get("allocatable") or {}).get(GPU_RESOURCE, 0) or 0)


def check_images(ctx: Context) -> Result:
    from labctl.k8s.api import ClusterError

    api = _answering(ctx)
    if api is None:
        return skip("not checked: the cluster does not answer")
    try:
        nodes = api.list("Node")
    except ClusterError as exc:
        if _forbidden(exc):
            return warn(str(exc), "ask the instructor to run `labctl doctor --cluster`")
        return fail(str(exc), "is the cluster up? `kubectl get nodes`")
    wanted = lab_images()
    targets = [n for n in nodes if _schedulable(n)] or nodes
    missing: list[str] = []
    for node in targets:
        # The kubelet reports a node's images in status.images, the largest first and at most
        # 50 by default (nodeStatusMaxImages): the multi-GB TensorFlow images make the list.
        held = {normalize(name) for image in node.get("status", {}).get("images") or []
                for name in image.get("names") or []}
        for image in wanted:
            # The CUDA build only on GPU nodes, as playbooks/images.yml pulls it.
            if image.endswith("-gpu") and not _gpus(node):
                continue
            if normalize(image) not in held:
                missing.append(f"{image} on {node['metadata']['name']}")
    if missing:
        return warn(f"not on the nodes yet: {', '.join(missing)}: the first pods pull them, "
                    "slowly, all attendees at once", IMAGES_FIX)
    return ok(f"{len(wanted)} lab image(s) on each of the {len(targets)} node(s) lab pods run on")


def checks(kubeconfig: str | None = None) -> list[Check]:
    ctx = Context(kubeconfig)

    def bound(fn: Callable[[Context], Result]) -> Callable[[], Result]:
        return lambda: fn(ctx)

    return [
        Check("cluster settings", bound(check_settings)),
        Check("vagrant", bound(check_vagrant)),
        Check("provider", bound(check_provider)),
        Check("virtualization", bound(check_virtualization)),
        Check("host network", bound(check_network)),
        Check("vagrant box", bound(check_box)),
        Check("host memory", bound(check_host_memory)),
        Check("host disk", bound(check_host_disk)),
        Check("venue bundle", bound(check_bundle)),
        Check("kubectl", bound(check_kubectl)),
        Check("nodes", bound(check_nodes)),
        Check("storage class", bound(check_storage)),
        Check("lab images", bound(check_images)),
    ]
