"""The lab_images role: its list is the labs' list, and playbooks/images.yml pulls only what is
missing, the GPU image on GPU nodes only, retrying a flaky registry.

The playbook runs on two systemd containers (a GPU node and a plain worker) whose `crictl` is a
stand-in script: it records its arguments, `inspecti` answers from a directory of "present"
images with crictl's own "no such image" failure otherwise, and `pull` succeeds, fails a given
number of times first, or always fails like a registry refusing the pull. It proves the role's
logic against crictl's exit codes and messages, not a pull.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
import yaml
from _systemd_node import systemd_node
from _venv import REPO, run

from labctl import versions
from labctl.k8s.static import images

DEFAULTS = REPO / "roles/lab_images/defaults/main.yml"
TF = versions.get("tensorflow_version")
SERVING, TENSORFLOW, GPU = (
    f"tensorflow/serving:{TF}", f"tensorflow/tensorflow:{TF}", f"tensorflow/tensorflow:{TF}-gpu")
FAKE_CRICTL = r"""#!/bin/sh
# Stand-in for crictl: images "present" are files in $store, named by image with / and : as _.
store=/var/lib/fake-crictl; mkdir -p $store
echo "$*" >> /var/log/crictl.calls
image=$(eval echo \${$#}); key=$(echo "$image" | tr '/:' '__'); fail=$store/$key.fail
fatal() { echo "time=\"2026-01-01T00:00:00Z\" level=fatal msg=\"$1\"" >&2; exit 1; }
case "$1" in
  --version) echo "crictl version v1.37.0" ;;
  inspecti)
    [ -e "$store/$key" ] || fatal "no such image \\\"$image\\\" present"
    echo '{"status": {"repoTags": ["docker.io/'"$image"'"]}}' ;;
  pull)
    if [ -e "$fail" ]; then
      n=$(cat "$fail")
      if [ "$n" != always ]; then [ "$n" -le 1 ] && rm "$fail" || echo $((n - 1)) > "$fail"; fi
      fatal "pulling image: rpc error: code = Unknown desc = failed to pull and unpack image \\\
\"docker.io/$image\\\": 429 Too Many Requests"
    fi
    touch "$store/$key"; echo "Image is up to date for sha256:0000" ;;
  *) echo "fake crictl: unexpected $*" >&2; exit 2 ;;
esac
"""


def test_role_lists_exactly_the_labs_images() -> None:
    """A lab image added, bumped or dropped in labctl without the role (or the reverse) fails."""
    defaults = yaml.safe_load(DEFAULTS.read_text())
    every, gpu = ([jinja2.Template(image).render(versions.pins()) for image in defaults[name]]
                  for name in ("lab_images_all", "lab_images_gpu"))
    listed = every + gpu
    assert sorted(listed) == images()
    assert len(set(listed)) == len(listed)
    # The CUDA builds (tag -gpu) go to GPU nodes only; everything else to every node.
    assert gpu == [i for i in images() if i.endswith("-gpu")]


def docker(container: str, script: str, check: bool = True) -> str:
    return subprocess.run(["docker", "exec", container, "sh", "-c", script],
                          capture_output=True, text=True, check=check).stdout


def key(image: str) -> str:
    return image.replace("/", "_").replace(":", "_")


@pytest.fixture
def nodes(require_docker: None, tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """gpu-1 (in gpu_nodes) and cpu-1, both kube_node; inventory in tmp_path/hosts.yml."""
    (tmp_path / "gpu").mkdir()
    (tmp_path / "cpu").mkdir()
    with (systemd_node("lab-images-gpu", tmp_path / "gpu", host="gpu-1") as gpu,
          systemd_node("lab-images-cpu", tmp_path / "cpu", host="cpu-1") as cpu):
        containers = {"gpu-1": gpu, "cpu-1": cpu}
        hosts = {}
        for host, container in containers.items():
            subprocess.run(["docker", "exec", "-i", container, "sh", "-c",
                            "cat > /usr/local/bin/crictl && chmod 755 /usr/local/bin/crictl"],
                           input=FAKE_CRICTL, text=True, check=True)
            hosts[host] = yaml.safe_load((tmp_path / host[:3] / "hosts.yml").read_text())[
                "all"]["hosts"][host]
        (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts, "children": {
            "kube_node": {"hosts": dict.fromkeys(hosts)},
            "k8s_cluster": {"children": {"kube_node": None}},
            "gpu_nodes": {"hosts": {"gpu-1": None}},
        }}}))
        yield containers, tmp_path


def play(tmp_path: Path, *extra: str) -> tuple[int, str, dict[str, int]]:
    done = run("ansible-playbook", "-i", tmp_path / "hosts.yml", REPO / "playbooks/images.yml",
               "-e", "lab_images_pull_delay=1", *extra)
    out = done.stdout + done.stderr
    recap = out.split("PLAY RECAP")[-1]
    changed = {h: int(n) for h, n in re.findall(r"^(\S+)\s+:.*?changed=(\d+)", recap, re.M)}
    return done.returncode, out, changed


def pulls(container: str) -> list[str]:
    calls = docker(container, "cat /var/log/crictl.calls 2>/dev/null", check=False).splitlines()
    return [c.split()[-1] for c in calls if c.startswith("pull ")]


def test_only_missing_images_are_pulled_gpu_image_on_gpu_nodes(
    nodes: tuple[dict[str, str], Path],
) -> None:
    containers, tmp_path = nodes
    # cpu-1 holds the Serving image already; one pull of the TensorFlow image fails first.
    docker(containers["cpu-1"], f"mkdir -p /var/lib/fake-crictl && touch /var/lib/fake-crictl/"
           f"{key(SERVING)} && echo 1 > /var/lib/fake-crictl/{key(TENSORFLOW)}.fail")

    rc, out, changed = play(tmp_path, "--check")
    assert rc == 0, out[-3000:]
    assert pulls(containers["cpu-1"]) == pulls(containers["gpu-1"]) == []  # a dry run

    rc, out, changed = play(tmp_path)
    assert rc == 0, out[-3000:]
    assert pulls(containers["cpu-1"]) == [TENSORFLOW, TENSORFLOW]  # retried once, Serving held
    assert pulls(containers["gpu-1"]) == [SERVING, TENSORFLOW, GPU]
    assert "FAILED - RETRYING: [cpu-1]: Pull the missing lab images" in out
    assert changed == {"cpu-1": 1, "gpu-1": 1}

    rc, out, changed = play(tmp_path)
    assert rc == 0, out[-3000:]
    assert changed == {"cpu-1": 0, "gpu-1": 0}, out[-3000:]
    assert len(pulls(containers["cpu-1"])) == 2
    assert len(pulls(containers["gpu-1"])) == 3


def test_a_pull_that_keeps_failing_stops_in_one_line(nodes: tuple[dict[str, str], Path]) -> None:
    containers, tmp_path = nodes
    store = "/var/lib/fake-crictl"
    docker(containers["cpu-1"], f"mkdir -p {store} && echo always > {store}/{key(SERVING)}.fail")
    rc, out, _ = play(tmp_path, "-e", "lab_images_pull_retries=2")
    assert rc != 0
    attempts = pulls(containers["cpu-1"]).count(SERVING)
    assert attempts == 3, pulls(containers["cpu-1"])  # the first attempt and 2 retries
    one_line = " ".join(out.split())  # the callback wraps long messages
    assert (f"lab_images: could not pull {SERVING} on cpu-1 after {attempts} attempts: "
            'time="2026-01-01T00:00:00Z" level=fatal msg="pulling image: rpc error') in one_line, (
        out[-3000:])
    assert "429 Too Many Requests" in out
    # The other images were pulled all the same, and the GPU node was not held up.
    assert TENSORFLOW in pulls(containers["cpu-1"])
    assert pulls(containers["gpu-1"]) == [SERVING, TENSORFLOW, GPU]


def test_a_node_without_crictl_stops_in_one_line(nodes: tuple[dict[str, str], Path]) -> None:
    containers, tmp_path = nodes
    docker(containers["gpu-1"], "rm /usr/local/bin/crictl")
    rc, out, _ = play(tmp_path, "--limit", "gpu-1")
    assert rc != 0
    assert "lab_images: no crictl on gpu-1" in out, out[-3000:]
    assert "run the prepare stage first (playbooks/prepare.yml)" in out
