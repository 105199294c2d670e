"""A throw-away systemd container (local/debian-systemd, never pulled) and an inventory for it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from _venv import run

SYSTEMD_ARGS = ["--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                "--tmpfs", "/run", "--tmpfs", "/run/lock"]


def wait_for_boot(name: str, timeout: float = 120) -> None:
    """Until systemd has booted: before that (no bus yet) `is-system-running` fails at once,
    and boot-time units (tmpfiles cleaning /tmp) would race what a test runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["docker", "exec", name, "systemctl", "is-system-running", "--wait"],
            capture_output=True, text=True, check=False, timeout=timeout,
        ).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.5)
    pytest.fail(f"{name} did not finish booting within {timeout:.0f} s")


@contextmanager
def systemd_node(prefix: str, directory: Path, host: str = "node-1",
                 docker_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Start the container (`docker run` with `docker_args` too, such as a --network), write
    DIRECTORY/hosts.yml naming it `host`; yield its name."""
    name = f"{prefix}-{os.getpid()}"
    started = subprocess.run(
        ["docker", "run", "-d", "--name", name, *SYSTEMD_ARGS, *docker_args,
         "local/debian-systemd:latest"],
        capture_output=True, text=True, check=False,
    )
    if started.returncode != 0:
        pytest.fail(f"cannot start {name} (make images builds it): {started.stderr.strip()}")
    try:
        wait_for_boot(name)
        (directory / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {host: {
            "ansible_connection": "community.docker.docker", "ansible_host": name,
            "ansible_python_interpreter": "/usr/bin/python3"}}}}))
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def role_play(directory: Path, role: str, tasks_from: str) -> Path:
    """DIRECTORY/play.yml: `role`'s `tasks_from` on every host, without facts."""
    path = directory / "play.yml"
    path.write_text(yaml.safe_dump([{
        "name": f"{role} {tasks_from}", "hosts": "all", "gather_facts": False,
        "tasks": [{"ansible.builtin.include_role": {"name": role, "tasks_from": tasks_from}}],
    }]))
    return path


def converge(directory: Path, *args: str, **variables: object) -> tuple[int, str, int]:
    """ansible-playbook DIRECTORY/play.yml on DIRECTORY/hosts.yml, `variables` as extra vars and
    `args` (such as --check) after them: (exit code, output, the recap's changed= count or -1)."""
    done = run("ansible-playbook", "-i", directory / "hosts.yml", directory / "play.yml",
               "-e", json.dumps(variables), *args)
    out = done.stdout + done.stderr
    changed = re.search(r"changed=(\d+)", out.split("PLAY RECAP")[-1])
    return done.returncode, out, int(changed.group(1)) if changed else -1
