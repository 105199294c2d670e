"""labctl.memory: what a run's peak memory counts (PSS, children included), on real processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import psutil
import pytest

from labctl import memory

# Holds MIB MiB of its own pages, starts CHILDREN children that hold CHILD_MIB each (or share the
# parent's pages, forked after the allocation), says "ready" and sleeps.
HOLDER = textwrap.dedent("""
    import os, sys, time
    mib, children, child_mib, fork = (int(a) for a in sys.argv[1:5])
    block = bytearray(os.urandom(mib << 20))
    for _ in range(children):
        if os.fork() == 0:
            if not fork:
                extra = bytearray(os.urandom(child_mib << 20))
            time.sleep(60)
            os._exit(0)
    print("ready", flush=True)
    time.sleep(60)
""")


def held(mib: int, children: int, child_mib: int, fork: bool,
         entries: Callable[[int], dict[str, list[int]]] = lambda pid: {"holder": [pid]}) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(mib), str(children),
                             str(child_mib), str(int(fork))], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        sampler = memory.Sampler(lambda: entries(proc.pid))
        time.sleep(memory.SAMPLE_S * 3)
        return sampler.stop()
    finally:
        subprocess.run(["pkill", "-KILL", "-P", str(proc.pid)], check=False)
        proc.kill()
        proc.wait()


@pytest.mark.skipif(sys.platform != "linux", reason="PSS is Linux's")
def test_a_process_and_its_children_are_summed() -> None:
    found = held(100, 2, 80, fork=False)
    assert found["measure"] == "pss"
    assert 260 <= found["peak_mib"] <= 360 and found["tasks"]["holder"] == found["peak_mib"]


@pytest.mark.skipif(sys.platform != "linux", reason="PSS is Linux's")
def test_pages_shared_by_forked_children_count_once() -> None:
    # Four processes map the same 200 MiB copy-on-write: RSS would say 800 MiB.
    found = held(200, 3, 0, fork=True)
    assert 200 <= found["peak_mib"] <= 260


@pytest.mark.skipif(sys.platform != "linux", reason="PSS is Linux's")
def test_a_process_counts_once_under_the_first_entry_that_holds_it() -> None:
    # As a forked run's tasks (listed first) are children of the server (listed last).
    def entries(pid: int) -> dict[str, list[int]]:
        return {"child": [c.pid for c in psutil.Process(pid).children()], "parent": [pid]}

    found = held(100, 1, 80, fork=False, entries=entries)
    # The child shares the parent's 100 MiB copy-on-write: half of it is in each.
    assert 110 <= found["tasks"]["child"] <= 160 and 40 <= found["tasks"]["parent"] <= 100
    assert 180 <= found["peak_mib"] <= 240  # the child counted twice too would be 300+
