"""kit_mirror_url, the venue bundle's mirror: with it set, every release archive, manifest and
apt repository the roles' tasks fetch comes from it, at the path where `make bundle` put the
file (labctl/bundle.py, Item.file); without it, from upstream. The tasks' own `url`/`checksum`
fields, and the URLs of the apt sources they add (apt reads those; tests/ansible/
test_apt_mirror.py runs that), are rendered with Ansible's templating and the roles'
variables, loops included.
molecule/containerd_release converges the release install offline from such a mirror."""

from __future__ import annotations

import runpy
from typing import Any

import pytest
from _tasks import tasks_with_vars
from ansible.errors import AnsibleFilterError, AnsibleUndefinedVariable

from labctl import bundle
from labctl.labs import REPO

MIRROR = "http://192.0.2.1:8000"
MIRRORED = ("release", "manifest", "key", "repo")
APT = ("ansible.builtin.deb822_repository", "ansible.builtin.copy")  # the latter: a .list file
FETCHING = {"ansible.builtin.get_url": ("url", "checksum"), "ansible.builtin.uri": ("url",),
            "ansible.builtin.deb822_repository": ("uris",), "ansible.builtin.copy": ("content",)}
mirrored = runpy.run_path(str(REPO / "roles/versions/filter_plugins/mirror.py"))["mirrored"]


def fetched(arch: str, **extra: Any) -> set[str]:
    """Every URL the roles' get_url and uri tasks ask for, for both pod networks. A task whose
    URL needs a run's own facts (a node's API endpoint) renders undefined and is no download."""
    urls = set()
    for cni in ("flannel", "calico"):
        render = bundle.template_renderer(arch, kube_cni=cni, **extra)
        for path in sorted((REPO / "roles").glob("*/tasks/*.yml")):
            for task, inherited in tasks_with_vars(path):
                module = next((m for m in FETCHING if m in task), None)
                if module is None or (module == "ansible.builtin.copy" and not str(
                        task[module].get("dest", "")).startswith("/etc/apt/sources.list.d/")):
                    continue
                local = {**inherited, **task.get("vars", {})}
                try:
                    items = render(task["loop"], **local) if "loop" in task else [None]
                    values = [render(str(task[module].get(field, "")), **local, item=item)
                              for item in items for field in FETCHING[module]]
                except AnsibleUndefinedVariable:
                    continue
                words = [w.removeprefix("sha256:") for v in values for w in v.split()]
                urls |= {w + "/" if module in APT and not w.endswith("/") else w
                         for w in words if "://" in w}
    return urls


def planned(arch: str) -> list[bundle.Item]:
    return [i for i in bundle.plan() if i.kind in MIRRORED and i.arch in (arch, "any")]


@pytest.mark.parametrize("arch", list(bundle.ARCHES))
def test_without_a_mirror_the_roles_fetch_upstream(arch: str) -> None:
    sources = {i.source for i in planned(arch)}
    assert len(sources) >= 11
    assert sources <= fetched(arch), "a planned download no task fetches"


@pytest.mark.parametrize("arch", list(bundle.ARCHES))
def test_with_a_mirror_every_release_and_manifest_comes_from_it(arch: str) -> None:
    urls = fetched(arch, kit_mirror_url=MIRROR)
    items = planned(arch)
    upstream = [u for u in urls for i in items if u.startswith(i.source)]  # a repository's key too
    assert upstream == [], "fetched upstream despite the mirror"
    assert {f"{MIRROR}/{i.file}" for i in items} <= urls


def test_the_filter() -> None:
    url = "https://github.com/etcd-io/etcd/releases/download/v1/etcd.tar.gz"
    assert mirrored(url, "release", "") == url
    assert mirrored(url, "release", None) == url
    assert mirrored(url, "release", MIRROR + "/") == (
        f"{MIRROR}/releases/github.com/etcd-io/etcd/releases/download/v1/etcd.tar.gz")
    for mirror in ("192.0.2.1:8000", "ftp://x", "http://a b"):
        with pytest.raises(AnsibleFilterError, match=r"kit_mirror_url .* is not an http"):
            mirrored(url, "release", mirror)
    with pytest.raises(AnsibleFilterError, match="kind 'image'"):
        mirrored(url, "image", MIRROR)
