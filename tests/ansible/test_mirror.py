"""kit_mirror_url, the venue bundle's mirror: with it set, every release archive, manifest and
apt repository the roles' tasks fetch comes from it, at the path where `make bundle` put the
file (labctl/bundle.py, Item.file); without it, from upstream. (A repository's own fetch is
its Release.key: apt reads the rest; tests/ansible/test_kubernetes_mirror.py runs that.) The
tasks' own `url`/`checksum` fields are rendered with Ansible's templating and the roles'
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
MIRRORED = ("release", "manifest", "repo")
FETCHING = ("ansible.builtin.get_url", "ansible.builtin.uri")
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
                if module is None:
                    continue
                local = {**inherited, **task.get("vars", {})}
                try:
                    items = render(task["loop"], **local) if "loop" in task else [None]
                    values = [render(str(task[module].get(field, "")), **local, item=item)
                              for item in items for field in ("url", "checksum")]
                except AnsibleUndefinedVariable:
                    continue
                urls |= {v.removeprefix("sha256:") for v in values if "://" in v}
    return urls


def planned(arch: str) -> list[bundle.Item]:
    return [i for i in bundle.plan() if i.kind in MIRRORED and i.arch in (arch, "any")]


def task_url(item: bundle.Item, base: str = "") -> str:
    """What a task fetches of `item`, upstream or (with `base`, the mirror) from the bundle."""
    url = f"{base}/{item.file}" if base else item.source
    return url + ("Release.key" if item.kind == "repo" else "")


@pytest.mark.parametrize("arch", list(bundle.ARCHES))
def test_without_a_mirror_the_roles_fetch_upstream(arch: str) -> None:
    sources = {task_url(i) for i in planned(arch)}
    assert len(sources) >= 9
    assert sources <= fetched(arch), "a planned download no task fetches"


@pytest.mark.parametrize("arch", list(bundle.ARCHES))
def test_with_a_mirror_every_release_and_manifest_comes_from_it(arch: str) -> None:
    urls = fetched(arch, kit_mirror_url=MIRROR)
    items = planned(arch)
    assert sorted(urls & {task_url(i) for i in items}) == [], "fetched upstream despite the mirror"
    assert {task_url(i, MIRROR) for i in items} <= urls


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
