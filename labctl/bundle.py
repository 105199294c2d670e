"""`python -m labctl.bundle` (`make bundle`): what a venue without internet needs, and fetching it.

`plan` lists every file, image and box the kit downloads, rendered from the roles' own
variables (roles/*/defaults and vars, versions.yml) with Ansible's templating for each
architecture the kit supports, so the list follows every version bump;
tests/unit/test_bundle.py scans the roles, the lab manifests and versions.yml for any URL or
image the plan misses. `fetch --out DIR` downloads what can be fetched into DIR and writes
DIR/manifest.json (kind, source, architecture, file, size, sha256 of each item). `serve DIR`
serves a fetched bundle to the nodes (labctl/registry.py): its files, and its images as a
registry mirror:

- release, manifest, key: files the roles download or apply (HTTP GET);
- repo: a flat apt repository the roles install from (pkgs.k8s.io; NVIDIA's, per
  architecture), copied in part and byte for byte: its signed index and the packages installed
  from it (labctl/apt_mirror.py);
- image: OCI images the cluster and the labs run (`docker pull` unless present, `docker save`);
- wheel: the labs' Python wheels for each supported laptop and Python (labctl/wheelhouse.py),
  into one folder, wheels/, which `make labs BUNDLE=DIR` installs from with no index;
- box: listed with how to get it (a Vagrant box needs Vagrant and a connected machine); not
  fetched. The distribution's own packages come through an apt proxy (common_apt_proxy).

The roles read release archives, manifests, keys and repositories from a bundle served over
HTTP when kit_mirror_url is set (roles/versions/filter_plugins/mirror.py maps an upstream URL to
the same path as Item.file; tests/ansible/test_mirror.py holds the two together).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from labctl import apt_mirror, wheelhouse
from labctl.download import digest, download
from labctl.labs import REPO

ARCHES = {"amd64": "x86_64", "arm64": "aarch64"}  # kit name -> Ansible's architecture fact
# platform.machine() -> kit's name: Linux's names, and macOS's own for arm64.
ARCH_OF = {machine: arch for arch, machine in ARCHES.items()} | {"arm64": "arm64"}
# The variables that name what the roles download, by kind. A variable holding a URL or an
# image that is not here (nor in test_bundle's list of non-downloads) fails the coverage test.
PER_ARCH = {"release": ("etcd_release_url", "_containerd_release_artifacts"),
            "repo": ("_nvidia_gpu_toolkit_repo_url",)}
ANY_ARCH = {
    "manifest": ("cni_flannel_manifest_url", "cni_calico_crds_url", "cni_calico_operator_url",
                 "metrics_server_manifest_url"),
    "key": ("nvidia_gpu_toolkit_key_url",),
    "repo": ("_kubernetes_apt_repo_url",),
    "image": ("_containerd_sandbox_image", "nfs_provisioner_image",
              "nfs_provisioner_smoke_image", "nvidia_gpu_device_plugin_image",
              "nvidia_gpu_smoke_image", "lab_images_all", "lab_images_gpu"),
}
# What each mirrored repository must hold: the packages its role installs (apt's NAME=VERSION).
REPO_PACKAGES = {"_kubernetes_apt_repo_url": "_kubernetes_package_specs + kubernetes_tool_packages",
                 "_nvidia_gpu_toolkit_repo_url": "_nvidia_gpu_toolkit_package_specs"}
# Images published for amd64 alone: TensorFlow's -gpu builds (the GPU nodes are x86 servers).
AMD64_ONLY = {"lab_images_gpu": ("amd64",)}
KUBEADM_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
FETCHED = ("release", "manifest", "key", "repo", "image", "wheel")
IMAGE_LINE = re.compile(r"^\s*(?:-\s*)?image:\s*[\"']?([^\s\"'#]+)", re.MULTILINE)
HOW = {
    "box": "vagrant box add --provider P --box-version V NAME on a connected machine, then "
           "copy ~/.vagrant.d/boxes (or `vagrant box repackage`)",
}


@dataclass(frozen=True)
class Item:
    kind: str
    source: str  # a URL, an image reference, or a box (name@version provider)
    arch: str = "any"
    packages: tuple[str, ...] = ()  # a repo's: what apt installs from it (NAME or NAME=VERSION)

    @property
    def file(self) -> str:
        """Where it lives in the bundle."""
        if self.kind == "image":
            name = self.source.replace("/", "_").replace(":", "_")
            return f"images/{name}{'' if self.arch == 'any' else '_' + self.arch}.tar"
        if self.kind == "wheel":  # one folder for every laptop's wheels
            return wheelhouse.FOLDER
        if self.kind in FETCHED:  # as roles/versions/filter_plugins/mirror.py maps the URL
            host_path = self.source.split("://", 1)[1].replace(":", "_")
            return f"{self.kind}s/{host_path}"
        return ""


def role_variables(arch: str) -> dict[str, Any]:
    """versions.yml and every role's defaults and vars, as one play would see them on a node
    of `arch`."""
    found: dict[str, Any] = dict(yaml.safe_load((REPO / "versions.yml").read_text()))
    for path in sorted((REPO / "roles").glob("*/defaults/main.yml")) + sorted(
            (REPO / "roles").glob("*/vars/main.yml")):
        found.update(yaml.safe_load(path.read_text()) or {})
    return found | {"ansible_facts": {"architecture": ARCHES[arch]}, "kube_cni": "flannel",
                    "inventory_hostname": "node", "groups": {}}


def template_renderer(arch: str, **extra: Any) -> Callable[..., Any]:
    """(template text, **variables) -> its value, rendered by Ansible's templating (ansible-core,
    from requirements-dev) over role_variables(arch), `extra` and the call's own variables (a
    loop's `item`), with the roles' filter plugins (such as `mirrored`) loaded."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import add_all_plugin_dirs
    from ansible.template import Templar, trust_as_template

    for role in sorted((REPO / "roles").glob("*/filter_plugins")):
        add_all_plugin_dirs(str(role.parent))

    def trusted(value: Any) -> Any:  # ansible-core 2.19 templates trusted strings only
        if isinstance(value, str):
            return trust_as_template(value)
        if isinstance(value, list):
            return [trusted(v) for v in value]
        if isinstance(value, dict):
            return {k: trusted(v) for k, v in value.items()}
        return value

    loader, base = DataLoader(), trusted(role_variables(arch) | extra)
    return lambda text, **local: Templar(loader=loader, variables=base | trusted(local)).template(
        trust_as_template(text))


def renderer(arch: str, **extra: Any) -> Callable[[str], Any]:
    """name -> `{{ name }}` rendered as template_renderer does."""
    render = template_renderer(arch, **extra)
    return lambda name: render("{{ " + name + " }}")


def _sources(kind: str, value: Any) -> list[str]:
    if isinstance(value, dict):  # _containerd_release_artifacts: {url, checksum_url}
        return [v for v in value.values() if isinstance(v, str)]
    if isinstance(value, list):
        return [s for v in value for s in _sources(kind, v)]
    text = " ".join(str(value).split())
    if kind == "repo":  # apt asks for <url>/InRelease: the bundle keeps it as a folder
        text = text.rstrip("/") + "/"
    return [text]


def _packages(kind: str, name: str, render: Callable[[str], Any]) -> tuple[str, ...]:
    """What apt installs from a repo item (REPO_PACKAGES, rendered); () for other kinds."""
    return tuple(render(REPO_PACKAGES[name])) if kind == "repo" else ()


def images(source: str, arches: tuple[str, ...] = tuple(ARCHES)) -> list[Item]:
    """An image's items: one archive per architecture."""
    return [Item("image", source, arch) for arch in arches]


def plan() -> list[Item]:
    # the same file may serve both architectures (a checksum list)
    arches: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    renders = {arch: renderer(arch) for arch in ARCHES}
    for arch, render in renders.items():
        for kind, names in PER_ARCH.items():
            for name in names:
                packages = _packages(kind, name, render)
                for source in _sources(kind, render(name)):
                    arches.setdefault((kind, source, packages), []).append(arch)
    items = {Item(kind, source, found[0] if len(found) == 1 else "any", packages): None
             for (kind, source, packages), found in arches.items()}
    render = renders["amd64"]
    for kind, names in ANY_ARCH.items():
        for name in names:
            packages = _packages(kind, name, render)
            for source in _sources(kind, render(name)):
                if kind == "image":  # a node pulls its own architecture's
                    items |= dict.fromkeys(images(source, AMD64_ONLY.get(name, tuple(ARCHES))))
                else:
                    items[Item(kind, source, packages=packages)] = None
    # kubeadm pulls the control plane's images itself: REPO/COMPONENT:vVERSION with its default
    # imageRepository and the ClusterConfiguration's kubernetesVersion (kubeadm's
    # cmd/kubeadm/app/images/images.go, as `kubeadm config images list` prints them).
    # CoreDNS's tag is kubeadm's own choice: fetch() adds it from the copied kubeadm.
    for component in KUBEADM_IMAGES:
        items |= dict.fromkeys(images(f"registry.k8s.io/{component}:v{render('kube_version')}"))
    for laptop, python in wheelhouse.targets():
        arch = ARCH_OF[laptop.machine]
        items[Item("wheel", wheelhouse.name(laptop, python), arch)] = None
    for provider, box in render("vagrant_boxes").items():
        if box.get("version"):  # docker's box is built locally by `make images`
            items[Item("box", f"{box['box']}@{box['version']} {provider}")] = None
    return list(items)


def _save_image(image: str, dest: Path, arch: str = "any") -> None:
    """`docker save` of `image` into `dest`: as it is here ("any", pulled unless present), or
    pulled for `arch`, whose archive must then hold that architecture."""
    from labctl import registry

    dest.parent.mkdir(parents=True, exist_ok=True)
    present = subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                             check=False).returncode == 0
    if arch != "any":
        subprocess.run(["docker", "pull", "--platform", f"linux/{arch}", image], check=True,
                       capture_output=True)
    elif not present:
        subprocess.run(["docker", "pull", image], check=True, capture_output=True)
    part = dest.with_suffix(".part")
    subprocess.run(["docker", "save", "-o", str(part), image], check=True, capture_output=True)
    found = registry.architectures(part) if arch != "any" else {arch}
    if found != {arch}:
        part.unlink()
        raise RuntimeError(f"docker save of {image} holds {', '.join(sorted(found))}, not {arch}")
    part.replace(dest)


def kubeadm_images(files: list[Path], packages: tuple[str, ...]) -> list[str]:
    """The images kubeadm itself pulls (`kubeadm config images list`: CoreDNS's is its own
    choice), from the kubeadm the repository copy holds for this machine; [] where it cannot
    run here (not Linux, or no such package). etcd's is left out: the kit runs its own etcd."""
    version = next((p.split("=")[1].rstrip("*-") for p in packages
                    if p.startswith("kubeadm=")), None)
    if version is None:
        return []
    here = ARCH_OF.get(platform.machine())
    debs = [f for f in files if f.name.startswith(f"kubeadm_{version}") and
            f.name.endswith(f"_{here}.deb")]
    missing = ("CoreDNS's image is not in the bundle: add it by hand (kubeadm config images "
               "list on a node names it)")
    if sys.platform != "linux" or not debs:
        print(f"bundle: the copied kubeadm cannot run on this machine; {missing}",
              file=sys.stderr)
        return []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            kubeadm = Path(scratch) / "kubeadm"
            kubeadm.write_bytes(apt_mirror.deb_file(debs[0], "/usr/bin/kubeadm"))
            kubeadm.chmod(0o755)
            listed = subprocess.run([str(kubeadm), "config", "images", "list",
                                     "--kubernetes-version", f"v{version}"], capture_output=True,
                                    text=True, check=True, timeout=60).stdout
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        print(f"bundle: cannot run the copied kubeadm ({err}); {missing}", file=sys.stderr)
        return []
    return [ref for ref in listed.split() if "/etcd:" not in ref]


def manifest_images(path: Path) -> list[str]:
    """The images an upstream manifest runs (its `image:` fields), which a node then pulls."""
    return list(dict.fromkeys(IMAGE_LINE.findall(path.read_text(errors="replace"))))


def fetch(items: list[Item], out: Path,
          image_arches: tuple[str, ...] = tuple(ARCHES)) -> dict[str, Any]:
    """Fetch every fetchable item into `out` (kept when already there), then write and return
    the manifest. The images of each fetched manifest join the list, for `image_arches`. An
    item that fails is recorded with its error; the others go on."""
    items = list(items)
    entries = []
    for n, item in enumerate(items, 1):
        entry: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v
                                 for k, v in asdict(item).items() if v != ()}
        if item.kind not in FETCHED:
            entries.append(entry | {"fetched": False, "how": HOW[item.kind]})
            continue
        dest = out / item.file
        print(f"bundle: [{n}/{len(items)}] {item.kind} {item.source}", flush=True)
        try:
            if item.kind == "wheel":
                files = wheelhouse.fetch(*wheelhouse.target(item.source), dest)
            elif item.kind == "repo":
                files = apt_mirror.fetch(item.source, item.packages, dest)
                items += [i for ref in kubeadm_images(files, item.packages)
                          for i in images(ref, image_arches) if i not in items]
            elif not dest.is_file():
                if item.kind == "image":
                    if item.arch != "any":  # an older bundle's archive would clash in serve
                        (out / Item("image", item.source).file).unlink(missing_ok=True)
                    _save_image(item.source, dest, item.arch)
                else:
                    download(item.source, dest)
        except (OSError, RuntimeError, ValueError, KeyError,
                subprocess.CalledProcessError) as err:
            entries.append(entry | {"fetched": False, "error": str(err).strip()[:300]})
            continue
        if item.kind in ("wheel", "repo"):  # a folder: wheels some laptops share, a repo's files
            entries.append(entry | {"fetched": True, "files": [
                {"file": f"{item.file.rstrip('/')}/{f.relative_to(dest).as_posix()}",
                 "size": f.stat().st_size, "sha256": digest(f)}
                for f in files]})
            continue
        entries.append(entry | {"fetched": True, "file": item.file,
                                "size": dest.stat().st_size, "sha256": digest(dest)})
        if item.kind == "manifest":
            items += [i for ref in manifest_images(dest) for i in images(ref, image_arches)
                      if i not in items]
    sizes = {f["file"]: f["size"] for e in entries for f in [e, *e.get("files", [])]
             if "size" in f}  # each file once, however many laptops share it
    manifest = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "items": entries,
                "size": sum(sizes.values())}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number (0-65535), got {text!r}")
    return int(text)


def serve(bundle: Path, bind: str, port: int) -> int:
    """Serve `bundle` until interrupted (labctl/registry.py)."""
    from labctl import registry

    if not (bundle / "images").is_dir():
        print(f"bundle: {bundle}/images does not exist: name the folder `make bundle` filled",
              file=sys.stderr)
        return 2
    try:
        store = registry.load(bundle / "images")
    except registry.ArchiveError as err:
        print(f"bundle: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"bundle: cannot read {err.filename or bundle}: {err.strerror}", file=sys.stderr)
        return 2
    try:
        httpd = registry.server(bundle, store, bind, port)
    except OSError as err:
        print(f"bundle: cannot serve on {bind}:{port}: {err.strerror}; pick another --bind or "
              "--port", file=sys.stderr)
        return 2
    # 0.0.0.0 answers on every address: the inventory needs the one the nodes reach
    url = f"http://{'ADDRESS' if bind in ('0.0.0.0', '::') else bind}:{port}"
    print(f"bundle: serving {bundle} on {bind}:{port} ({len(store.tags)} image tag(s)); in the "
          f"inventory:\n  kit_mirror_url: {url}\n"
          f"  containerd_registry_mirrors: {{_default: [\"{url}\"]}}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labctl.bundle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("plan", help="list what a venue bundle holds (kind, architecture, source)")
    p = sub.add_parser("fetch", help="fetch it into a directory, with manifest.json")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--kind", action="append", choices=FETCHED,
                   help="only these kinds (repeatable; default all)")
    p = sub.add_parser("serve", help="serve a fetched bundle on the venue network: its files "
                                     "(kit_mirror_url) and its images as a registry mirror")
    p.add_argument("bundle", type=Path, metavar="DIR")
    p.add_argument("--bind", default="127.0.0.1", metavar="ADDRESS",
                   help="the address the nodes reach, e.g. 192.168.56.1 (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.bundle, args.bind, args.port)
    try:
        items = plan()
    except ImportError:
        raise SystemExit("bundle: needs Ansible to read the roles: run `make venv-dev` and use "
                         ".venv/bin/python") from None
    if args.command == "plan":
        for item in items:
            print(f"{item.kind:9} {item.arch:6} {item.source}")
        return 0
    if args.kind:
        items = [i for i in items if i.kind in args.kind]
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = fetch(items, args.out)
    failed = [e for e in manifest["items"] if e.get("error")]
    print(f"bundle: {len(manifest['items']) - len(failed)} of {len(items)} item(s), "
          f"{manifest['size'] / 2**20:.0f} MiB in {args.out}; manifest.json lists them")
    for entry in failed:
        print(f"bundle: failed: {entry['source']}: {entry['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
