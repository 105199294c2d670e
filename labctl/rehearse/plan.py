"""What the rehearsal will do: the cluster the Vagrantfile plans, and the steps to prove it."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from labctl.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
VM_PROVIDERS = ("virtualbox", "libvirt")
# The labs the cluster must run, with --check: the k8s-only labs and two of the local ones.
CLUSTER_LABS = ("04", "05", "08", "09", "10", "11")
# One lab run again with a worker killed part-way, to prove recovery on the real cluster.
KILL_LAB, KILL = "04", "worker:1@300"
# A classroom of two on the rehearsal cluster (`labctl class`), each running lab 09 with the
# kubeconfig `class up` wrote: the Role, quota and NetworkPolicy meet a real API server.
CLASSROOM = ("rehearsal-a", "rehearsal-b")
CLASSROOM_LAB = "09"
# How a provisioner run that changed nothing looks in Ansible's PLAY RECAP.
RECAP = re.compile(r"^(?P<host>\S+)\s*: ok=\d+\s+changed=(?P<changed>\d+)\s", re.MULTILINE)


@dataclass(frozen=True)
class Cluster:
    """The Vagrantfile's plan, as `vagrant validate` prints it while loading."""

    provider: str
    nodes: tuple[str, ...]
    memory_mib: int  # all VMs together
    ansible_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    name: str
    stage: str  # "cluster", "labs" or "teardown": how the table groups it
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    skip: str = ""  # why it does not apply here; the table records it as skipped
    judge: str = ""  # a named extra check of the output (see runner.JUDGES)


def read_cluster(vagrant: str = "vagrant", cwd: Path = ROOT) -> Cluster:
    """The planned cluster, or UsageError with the Vagrantfile's own one-line complaint."""
    try:
        done = subprocess.run(
            [vagrant, "validate", "--ignore-provider"], cwd=cwd, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise UsageError(f"{vagrant} is not installed: see the README's cluster section") from None
    text = done.stdout + done.stderr
    if done.returncode != 0:
        lines = [line for line in text.splitlines() if line.startswith("cluster config:")]
        raise UsageError(lines[-1] if lines else f"vagrant validate failed: {text.strip()[-300:]}")
    return parse_plan(done.stdout)


def parse_plan(text: str) -> Cluster:
    """The plan lines the Vagrantfile prints (Cluster.plan in the Vagrantfile)."""
    head = re.search(r"= \d+ VMs on (\S+) ", text)
    memory = re.search(r"(\d+) MiB of host memory", text)
    if not head or not memory:
        raise UsageError("the Vagrantfile printed no cluster plan: is this the kit's Vagrantfile?")
    nodes = tuple(re.findall(r"^  (\S+)\s+\d+\.\d+\.\d+\.\d+\s", text, re.MULTILINE))
    tags = re.search(r"^Ansible tags: (\S+)$", text, re.MULTILINE)
    return Cluster(
        head.group(1), nodes, int(memory.group(1)), tuple(tags.group(1).split(",")) if tags else ()
    )


def steps(
    cluster: Cluster, project: Path, *, keep: bool, disruptive: bool, labctl: str,
    room: Path | None = None,
) -> list[Step]:
    """Bring-up, idempotence, verify, the labs, a recovery, a classroom, then teardown. Vagrant
    runs in `project` (the Vagrantfile and its inventory); make and labctl are this kit's. `room`
    holds the classroom's names file (`write_names`), kubeconfigs and cards."""
    room = room or project / "rehearsal-classroom"
    in_vms = cluster.provider in VM_PROVIDERS
    no_labs = (
        ""
        if in_vms
        else (
            f"the {cluster.provider} provider runs no kubelet: the labs need VirtualBox or libvirt"
        )
    )
    verify = ["make", "-C", str(ROOT), "verify", f"INVENTORY={project / 'inventory' / 'vagrant'}"]
    # A partial provision (ansible_tags) is verified as such: its stages and the cluster checks.
    if cluster.ansible_tags:
        verify.append(f"STAGES={','.join((*cluster.ansible_tags, 'cluster'))}")
    verify_env = {"INFRA_DISRUPTIVE": "1"} if disruptive else {}
    plan = [
        Step("vagrant up", "cluster", ("vagrant", "up")),
        Step(
            "re-provision changes nothing", "cluster", ("vagrant", "provision"), judge="idempotent"
        ),
        Step("make verify", "cluster", tuple(verify), verify_env),
    ]
    plan += [
        Step(f"lab {lab}", "labs", (labctl, "run", lab, "--target", "k8s", "--check", "-q"),
             skip=no_labs)
        for lab in CLUSTER_LABS
    ]  # fmt: skip
    plan.append(
        Step(f"lab {KILL_LAB} --kill {KILL}", "labs",
             (labctl, "run", KILL_LAB, "--target", "k8s", "--check", "-q", "--kill", KILL),
             skip=no_labs)
    )  # fmt: skip
    names = str(room / "names.txt")
    plan.append(Step("classroom up", "labs", (labctl, "class", "up", names, "--out", str(room)),
                     skip=no_labs))
    plan += [
        Step(f"lab {CLASSROOM_LAB} as {who}", "labs",
             (labctl, "run", CLASSROOM_LAB, "--target", "k8s", "--check", "-q", "--kubeconfig",
              str(room / who / "kubeconfig")), skip=no_labs)
        for who in CLASSROOM
    ]  # fmt: skip
    plan.append(Step("classroom status", "labs", (labctl, "class", "status"), skip=no_labs))
    plan.append(Step("classroom down", "labs", (labctl, "class", "down", names), skip=no_labs))
    plan.append(
        Step("vagrant destroy", "teardown", ("vagrant", "destroy", "-f"),
             skip="KEEP=1: the cluster stays up" if keep else "")
    )  # fmt: skip
    return plan


def write_names(room: Path) -> None:
    """The classroom's names file, one attendee per line, as an instructor writes it."""
    room.mkdir(parents=True, exist_ok=True)
    (room / "names.txt").write_text("".join(f"{who}\n" for who in CLASSROOM))
