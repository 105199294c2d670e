"""The common role waits for boot-time package runs before its first apt task.

On a systemd container, apt-daily.service (Debian's own unit, its command replaced by a sleep in
a drop-in) stays "activating" for a while, as it does on Ubuntu's first boot while it holds the
dpkg lock.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from _systemd_node import converge, role_play, systemd_node

pytestmark = [pytest.mark.docker, pytest.mark.slow]
DROP_IN = "/etc/systemd/system/apt-daily.service.d"


# The unit is busy for `busy` seconds. Where the role gives up, the unit stays busy far longer than
# the timeout, so that a slow ansible-playbook start (a loaded CI host) cannot outlast it.
@pytest.mark.parametrize(("timeout", "busy", "waits"), [(60, 15, True), (5, 120, False)])
def test_first_apt_task_waits_for_apt_daily(
    require_docker: None, tmp_path: Path, timeout: int, busy: int, waits: bool
) -> None:
    with systemd_node("boot-apt", tmp_path) as name:
        role_play(tmp_path, "common", "packages")
        # The image's apt lists are empty; a real node has them.
        subprocess.run(["docker", "exec", name, "apt-get", "update", "-qq"],
                       check=True, capture_output=True)
        subprocess.run(
            ["docker", "exec", name, "sh", "-c",
             f"mkdir -p {DROP_IN} && printf '[Service]\\nExecStart=\\n"
             f"ExecStart=/bin/sleep {busy}\\n' > {DROP_IN}/busy.conf"
             " && systemctl daemon-reload && systemctl start --no-block apt-daily.service"],
            check=True, capture_output=True,
        )
        started = time.monotonic()
        rc, out, _ = converge(tmp_path, common_boot_apt_timeout=timeout)
        elapsed = time.monotonic() - started
        if waits:
            assert rc == 0, out[-3000:]
            assert elapsed >= busy - 2, f"did not wait: {elapsed:.1f} s"
        else:
            # Gave up on the unit still busy, not on anything else.
            assert rc != 0
            assert re.search(r"FAILED - RETRYING: \[node-1\]: Wait until the boot-time", out), out
            assert "common: apt-daily.service still running on node-1 after 5 s" in out, out[-3000:]
