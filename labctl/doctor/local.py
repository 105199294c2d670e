"""The local checks: can this laptop run the local labs (every task a process on 127.0.0.1)?

Each check reads the system only through the probe functions beside it (the tests replace them)
and decides from what they return.
"""

from __future__ import annotations

import ipaddress
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from labctl import labs, platforms, ports
from labctl.doctor.results import Check, Result, fail, ok, warn

MIB = 2**20
# Memory, measured on the README's reference machine (2 cores, x86_64): `labctl run all
# --check` (what `make labs` runs) with its process tree sampled every 0.2 s from
# /proc/PID/smaps_rollup peaked at 1767 MiB PSS, 3056 MiB RSS, in lab 12 (labctl and 5
# TensorFlow tasks; lab 12 alone: 1710 MiB PSS). PSS counts the pages the TensorFlow processes
# share once, RSS once per process.
LABS_PEAK_PSS_MIB = 1767
LABS_PEAK_RSS_MIB = 3056
# Below the measured peak plus a little, the labs swap or get OOM-killed: a blocker.
MEMORY_FAIL_MIB = 2048
# Below the RSS sum (the bound if no page were shared), a run with more tasks (--workers, --ps)
# or a busy browser can tip it over.
MEMORY_WARN_MIB = LABS_PEAK_RSS_MIB
# Disk: `make labs` wrote 8.2 MB of runs, the largest one lab 12's at 4.1 MB, and every run is
# kept until `labctl clean`. 256 MiB holds about 60 runs of lab 12: a day of re-running.
DISK_FAIL_MIB = 256
# Beyond the runs: room for `--dataset mnist` (11 MB), TensorBoard's files, the system itself
# (a judgement, not a measurement).
DISK_WARN_MIB = 1024
# TensorFlow's import time. `labctl run` fails a run whose tasks report no step within its
# stall watchdog (--stall-timeout, default 60 s: labctl.cli.DEFAULT_STALL_S), and a lab starts
# up to 5 TensorFlow tasks at once: on the 2-core reference machine 6 imports at once took
# 20 s each against 5 s for one alone, about 4x. An import over 60 / 4 = 15 s alone would eat
# that window: a warning with the way round it (--stall-timeout). Only an import slower than
# the whole window, which no lab survives with its defaults, blocks the day. Import times
# swing with the disk cache and the machine's load: a slow first import is measured again.
# Tasks import at once as plain processes (macOS, --no-preload); on Linux they are forked from
# one import (labctl.preload), so there the same thresholds err on the safe side.
STALL_WINDOW_S = 60.0
IMPORT_CONCURRENCY = 4.0
TF_IMPORT_STALL_S = STALL_WINDOW_S / IMPORT_CONCURRENCY
TF_IMPORT_WARN_S = TF_IMPORT_STALL_S / 2
TF_IMPORT_FAIL_S = STALL_WINDOW_S
TF_IMPORT_TIMEOUT_S = 120.0  # a first import after installing compiles .pyc files: give it time
SMOKE_TIMEOUT_S = 30.0  # `labctl launch --timeout` of the smoke test; it took 0.5 s here
VENV_FIX = "`make venv` (or `.venv/bin/pip install -e '.[labs]'`)"


# --- platform and Python -------------------------------------------------------------------------
def host() -> tuple[str, str, str]:
    """(sys.platform, machine, kernel release)."""
    return sys.platform, platform.machine(), platform.release()


def check_platform() -> Result:
    sys_platform, machine, release = host()
    laptop = platforms.find(sys_platform, machine)
    if laptop is None or not laptop.supported:
        return fail(str(platforms.problem(sys_platform, machine, platforms.PYTHONS[0])),
                    "use a supported laptop (README: Which laptop?)")
    wsl = sys_platform == "linux" and "microsoft" in release.lower()
    where = labs.REPO
    if wsl and where.parts[1:2] == ("mnt",):
        # README, Windows: TensorFlow's many small files are slow across the 9P boundary.
        return warn(f"{laptop.name}, but the kit is at {where}, on the Windows drive",
                    "clone it inside WSL (under ~), not under /mnt/c")
    return ok(f"{laptop.name}{' (WSL2)' if wsl else ''}: supported")


def python_version() -> str:
    return platform.python_version()


def check_python() -> Result:
    version = python_version()
    minor = ".".join(version.split(".")[:2])
    if minor not in platforms.PYTHONS:
        return fail(f"Python {version} ({sys.executable}): TensorFlow 2.21 has wheels for "
                    f"{', '.join(platforms.PYTHONS)} only",
                    f"rm -rf .venv && make venv PYTHON=python{platforms.PYTHONS[-1]}")
    return ok(f"Python {version} ({sys.executable})")


# --- TensorFlow ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TfImport:
    version: str | None  # None: the import failed
    seconds: float
    error: str = ""  # the last line of its error, or how it died


TF_PROBE = (
    "import json, time\n"
    "t = time.monotonic()\n"
    "import tensorflow as tf\n"
    "print(json.dumps({'version': tf.__version__, 'seconds': time.monotonic() - t}))\n"
)


def import_tensorflow(timeout_s: float = TF_IMPORT_TIMEOUT_S,
                      python: str | None = None) -> TfImport:
    """Import TensorFlow in a fresh interpreter, this venv's (the one the tasks run), never in
    labctl's own process; timed there."""
    started = time.monotonic()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        done = subprocess.run([python or sys.executable, "-c", TF_PROBE], capture_output=True,
                              text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired:
        return TfImport(None, timeout_s, f"no answer within {timeout_s:g} s")
    if done.returncode == 0:
        try:
            found = json.loads(done.stdout.strip().splitlines()[-1])
            return TfImport(str(found["version"]), float(found["seconds"]))
        except (ValueError, KeyError, IndexError):
            pass
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        return TfImport(None, time.monotonic() - started, f"the interpreter died of {name}")
    lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
    return TfImport(None, time.monotonic() - started, lines[-1] if lines else "no output")


def pinned_tensorflow() -> str:
    from labctl import versions

    return versions.get("tensorflow_version")


def check_tensorflow() -> Result:
    probe = import_tensorflow()
    if probe.version is not None and probe.seconds > TF_IMPORT_WARN_S:
        again = import_tensorflow()  # now from a warm disk cache
        probe = again if again.version is not None and again.seconds < probe.seconds else probe
    if probe.version is None:
        if "No module named 'tensorflow'" in probe.error:
            return fail("TensorFlow is not installed in this virtualenv", VENV_FIX)
        if "SIGILL" in probe.error:  # the x86_64 wheels are built for AVX
            return fail("TensorFlow died on import with SIGILL: this CPU lacks an instruction "
                        "set it is built for (AVX)",
                        "run the labs on another laptop, or on the cluster (--target k8s)")
        return fail(f"import tensorflow failed: {probe.error}",
                    "reinstall: `.venv/bin/pip install --force-reinstall -e '.[labs]'`")
    took = f"TensorFlow {probe.version}, import {probe.seconds:.1f} s"
    pin = pinned_tensorflow()
    if probe.seconds > TF_IMPORT_FAIL_S:
        return fail(f"{took}: longer than the labs' {STALL_WINDOW_S:g} s stall window alone",
                    "move the kit (and .venv) to a local SSD, or use another laptop")
    if probe.version != pin:
        return warn(f"{took}; the labs are verified with {pin}", VENV_FIX)
    if probe.seconds > TF_IMPORT_STALL_S:
        return warn(f"{took}: a lab's tasks importing at once may not start within the "
                    f"{STALL_WINDOW_S:g} s stall window",
                    "close other programs, or run labs with --stall-timeout 180")
    if probe.seconds > TF_IMPORT_WARN_S:
        return warn(f"{took}: slow (over {TF_IMPORT_WARN_S:g} s); labs will start slowly",
                    "close other programs while the labs run")
    return ok(took)


# --- memory and disk -----------------------------------------------------------------------------
def memory_mib() -> tuple[int, int]:
    """(available, total) memory in MiB."""
    import psutil

    mem = psutil.virtual_memory()
    return int(mem.available // MIB), int(mem.total // MIB)


def check_memory() -> Result:
    available, total = memory_mib()
    found = f"{available / 1024:.1f} GiB available of {total / 1024:.1f} GiB"
    need = f"the labs peak at {LABS_PEAK_PSS_MIB / 1024:.1f} GiB"
    if available < MEMORY_FAIL_MIB:
        fix = ("close other programs (browser tabs, IDEs, containers)" if total >= MEMORY_FAIL_MIB
               else "this laptop has too little memory: run the labs on the cluster")
        return fail(f"{found}; {need}", fix)
    if available < MEMORY_WARN_MIB:
        return warn(f"{found}; {need} (up to {LABS_PEAK_RSS_MIB / 1024:.1f} GiB with more tasks)",
                    "close other programs before the labs")
    return ok(f"{found}; {need}")


def disk_free_mib(path: Path) -> int:
    while not path.exists():  # the state directory may not exist before the first run
        path = path.parent
    return int(shutil.disk_usage(path).free // MIB)


def check_disk() -> Result:
    where = labs.state_dir()
    free = disk_free_mib(where)
    found = f"{free / 1024:.1f} GiB free for the runs ({where})"
    if free < DISK_FAIL_MIB:
        return fail(f"{found}; a day of runs needs {DISK_FAIL_MIB} MiB",
                    "free some disk (`labctl clean --all` removes old runs), or set "
                    "LABCTL_STATE_DIR to a roomier disk")
    if free < DISK_WARN_MIB:
        return warn(f"{found}; under {DISK_WARN_MIB // 1024} GiB", "free some disk")
    return ok(found)


# --- loopback ------------------------------------------------------------------------------------
def largest_default_cluster() -> int:
    """How many task ports the biggest local lab takes by default (what `make labs` runs)."""
    from labctl.plan import resolve_counts
    from labctl.states import LabKind

    sizes = [0]
    for path in labs.lab_dirs():
        try:
            lab = labs.load_lab(path)
        except labs.LabError:
            continue
        if lab.kind == LabKind.LOCAL:
            sizes.append(sum(resolve_counts(lab, {}).values()))
    return max(sizes)


def loopback(count: int) -> str:
    """Take `count` ports as the local target does (labctl.ports.free_ports), then listen on
    each and connect to it over 127.0.0.1. '' when all worked, else the first error."""
    try:
        chosen = ports.free_ports(count)
        with ExitStack() as stack:
            for port in chosen:
                server = stack.enter_context(socket.create_server(("127.0.0.1", port)))
                client = stack.enter_context(socket.create_connection(("127.0.0.1", port),
                                                                      timeout=5))
                server.settimeout(5)
                peer, _ = server.accept()
                stack.enter_context(peer)
                client.sendall(b"ping")
                if peer.recv(4) != b"ping":
                    return f"port {port}: the bytes sent did not arrive"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return ""


def check_ports() -> Result:
    count = max(largest_default_cluster(), 2)
    problem = loopback(count)
    if problem:
        return fail(f"cannot listen on and connect to {count} ports on 127.0.0.1: {problem}",
                    "bring the loopback interface up (`sudo ip link set lo up`), or allow "
                    "127.0.0.1 in the firewall / security software")
    return ok(f"{count} free ports on 127.0.0.1, each listened on and reached")


# --- proxy ---------------------------------------------------------------------------------------
# gRPC core, which TensorFlow's gRPC runtime is built on, sends a channel through an HTTP
# CONNECT proxy taken from the first of grpc_proxy, https_proxy, http_proxy that is set, unless
# the target's host is in no_grpc_proxy, or (when that is unset) no_proxy: gRPC's
# doc/environment_variables.md; src/core/handshaker/http_connect/http_proxy_mapper.cc reads
# exactly these lower-case names, ignores an empty value or a non-http:// URI, and matches a
# no_proxy entry as a host-name suffix or an address/prefix range (no `*` wildcard).
GRPC_PROXY_VARS = ("grpc_proxy", "https_proxy", "http_proxy")
GRPC_NO_PROXY_VARS = ("no_grpc_proxy", "no_proxy")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")  # the hosts of local TF_CONFIGs (taskenv.LOOPBACK)


def environment() -> Mapping[str, str]:
    return os.environ


def _exempt(host: str, entries: str) -> bool:
    """Whether gRPC bypasses the proxy for `host` under this no_proxy list."""
    for entry in (e.strip() for e in entries.split(",")):
        if not entry:
            continue
        if host.lower().endswith(entry.lower()):
            return True
        try:
            if "/" in entry and ipaddress.ip_address(host) in ipaddress.ip_network(entry,
                                                                                   strict=False):
                return True
        except ValueError:  # `localhost`, or an entry that is not an address range
            continue
    return False


def check_proxy() -> Result:
    env = environment()
    name = next((n for n in GRPC_PROXY_VARS if n in env), None)
    if name is None:
        upper = [n for n in ("HTTPS_PROXY", "HTTP_PROXY", "GRPC_PROXY") if env.get(n)]
        if upper:
            return ok(f"{upper[0]} is set; gRPC reads only the lower-case names, so loopback "
                      "traffic goes direct")
        return ok("no proxy variable set")
    value = env[name]
    if not value:
        return ok(f"{name} is empty, which tells gRPC to use no proxy")
    if not value.lower().startswith("http://"):
        return ok(f"{name}={value} is not an http:// URI: gRPC ignores it and connects directly")
    no_name = next((n for n in GRPC_NO_PROXY_VARS if n in env), "no_proxy")
    missing = [h for h in LOOPBACK_HOSTS if not _exempt(h, env.get(no_name, ""))]
    if not missing:
        return ok(f"{name} is set; {no_name} exempts {' and '.join(LOOPBACK_HOSTS)}")
    # labctl exempts loopback for its own tasks (taskenv.local), and lab programs their
    # TF_CONFIG hosts: what is left is a TensorFlow program started by hand. Not a blocker.
    return warn(f"{name}={value} and {no_name} lacks {', '.join(missing)}: gRPC would send a "
                "loopback cluster's traffic to the proxy and hang (labctl's own tasks are "
                "exempt; a TensorFlow program you start yourself is not)",
                f"export {no_name}=\"${no_name},localhost,127.0.0.1\" (e.g. in ~/.bashrc)")


# --- a real two-process launch -------------------------------------------------------------------
# Two workers of `labctl launch` find each other from TF_CONFIG and exchange a message over
# 127.0.0.1: the launcher, the ports, TF_CONFIG and loopback TCP, without TensorFlow's start-up.
SMOKE_PROGRAM = '''\
import json, os, socket, time
config = json.loads(os.environ["TF_CONFIG"])
me = config["task"]["index"]
host, port = config["cluster"]["worker"][0].rsplit(":", 1)
if me == 0:
    with socket.create_server((host, int(port))) as server:
        server.settimeout(20)
        peer, _ = server.accept()
        with peer:
            assert peer.recv(16) == b"hello worker 0", "worker 1 said something else"
            peer.sendall(b"ok")
else:
    deadline = time.monotonic() + 20
    while True:
        try:
            sock = socket.create_connection((host, int(port)), timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with sock:
        sock.sendall(b"hello worker 0")
        sock.recv(2)
print(f"worker {me}: message exchanged")
'''


@dataclass(frozen=True)
class Launch:
    exit_code: int | None  # None: it did not end in time
    seconds: float
    output: str


def smoke_launch(timeout_s: float = SMOKE_TIMEOUT_S) -> Launch:
    """`labctl launch --workers 2 -- python smoke.py` in a temporary directory (its runs too),
    removed afterwards."""
    from labctl import procs

    with tempfile.TemporaryDirectory(prefix="labctl-doctor-") as tmp:
        work = Path(tmp)
        (work / "smoke.py").write_text(SMOKE_PROGRAM)
        state = work / "state"
        argv = [sys.executable, "-m", "labctl", "launch", "--workers", "2", "--max-restarts",
                "0", "--timeout", f"{timeout_s:g}", "-q", "--", "python", "smoke.py"]
        env = {**os.environ, "LABCTL_STATE_DIR": str(state)}
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout_s + 30)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:  # the launcher itself hangs: stop it and its tasks
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            code = None
        finally:
            for run in {p for p in procs.run_processes().values() if p.is_relative_to(state)}:
                procs.kill_run(run)
        return Launch(code, time.monotonic() - started, out or "")


def check_launch() -> Result:
    result = smoke_launch()
    if result.exit_code == 0:
        return ok(f"`labctl launch --workers 2` ran a 2-process program in {result.seconds:.1f} s")
    lines = [ln.rstrip() for ln in result.output.splitlines() if ln.strip()]
    # labctl's verdict line (`labctl: failed: ...`), and the failed task's last line under it
    said = next((ln.removeprefix("labctl: ") for ln in lines
                 if ln.startswith(("labctl: failed", "labctl: error"))),
                lines[-1].strip() if lines else "no output")
    tail = [ln.strip() for ln in lines if ln.startswith("    ")]
    said += f" (its last output: {tail[-1]})" if tail else ""
    what = "did not end" if result.exit_code is None else f"exited {result.exit_code}"
    return fail(f"`labctl launch --workers 2` of a tiny program {what}: {said}",
                "send `labctl doctor --json` to the instructor")


def checks() -> list[Check]:
    return [
        Check("platform", check_platform),
        Check("python", check_python),
        Check("tensorflow", check_tensorflow),
        Check("memory", check_memory),
        Check("disk", check_disk),
        Check("loopback ports", check_ports),
        Check("proxy", check_proxy),
        Check("launch", check_launch),
    ]
