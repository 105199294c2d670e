"""`labctl doctor`'s local checks: each probe replaced into a pass and a fail (the line and its
fix), the probes themselves on real stand-ins (a Python without TensorFlow, an interpreter that
dies of SIGILL, a taken port, real gRPC behind a proxy, a failing launch), exit codes, the JSON
document, and real runs of `labctl doctor` on this machine, healthy and deliberately broken."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _labctl import LABCTL, leftovers

from labctl import cli, doctor, platforms, versions
from labctl.doctor import Check, Result, Status, fail, local, ok, warn

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
TF = versions.get("tensorflow_version")


def line(name: str, result: Result) -> str:
    return doctor.line(name, result, len(name))


# --- the support table: README and code agree -----------------------------------------------------
def readme_laptops() -> dict[str, str]:
    """The "Which laptop?" table (the section's first): laptop -> its `make labs` cell."""
    section = README.split("## Which laptop?", 1)[1].split("\n#", 1)[0]
    table = section[section.index("\n|"):].split("\n\n", 1)[0]
    rows = [r for r in table.strip().splitlines() if "---" not in r][1:]
    return {cells[0]: cells[1] for cells in ([c.strip() for c in r.strip("|").split("|")]
                                             for r in rows)}


def test_the_readme_table_is_platforms_table() -> None:
    """Every row of the README's table is a row of labctl.platforms (the name up to its
    parenthesis), supported exactly when the README says `yes`; and the Pythons match."""
    table = readme_laptops()
    code = {p.name.split(" (")[0]: p.supported for p in platforms.LAPTOPS}
    assert {name: cell == "yes" for name, cell in table.items()} == code
    listed = re.search(r"Python ([\d., and]+) are accepted", README)
    assert listed and re.findall(r"3\.\d+", listed.group(1)) == list(platforms.PYTHONS)


def test_the_table_check_fails_on_a_disagreement(monkeypatch: pytest.MonkeyPatch) -> None:
    """Watched: the same comparison with one row's support flipped in code."""
    flipped = tuple(platforms.Laptop(p.name, p.sys_platform, p.machine, not p.supported
                                     if p.machine == "x86_64" and p.sys_platform == "darwin"
                                     else p.supported) for p in platforms.LAPTOPS)
    monkeypatch.setattr(platforms, "LAPTOPS", flipped)
    with pytest.raises(AssertionError):
        test_the_readme_table_is_platforms_table()


def test_the_readme_states_the_thresholds() -> None:
    doctor_section = README.split("### The doctor", 1)[1].split("\n#", 1)[0]
    for words in (f"under {local.MEMORY_FAIL_MIB // 1024} GiB available",
                  f"peaks at {local.LABS_PEAK_PSS_MIB / 1024:.1f} GiB",
                  f"under {round(local.MEMORY_WARN_MIB / 1024)} GiB",
                  f"under {local.DISK_FAIL_MIB} MiB free",
                  f"under {local.DISK_WARN_MIB // 1024} GiB",
                  f"takes over {local.TF_IMPORT_FAIL_S:g} s", f"over {local.TF_IMPORT_WARN_S:g} s",
                  f"or {local.TF_IMPORT_STALL_S:g} s", f"{local.largest_default_cluster()} tasks"):
        assert words in doctor_section, words


def test_the_import_budget_follows_labctls_stall_watchdog() -> None:
    assert cli.DEFAULT_STALL_S == local.STALL_WINDOW_S == local.TF_IMPORT_FAIL_S
    assert local.TF_IMPORT_STALL_S == 15.0


# --- platform and Python --------------------------------------------------------------------------
@pytest.mark.parametrize(("host", "status", "words"), [
    (("linux", "x86_64", "6.8.0-45-generic"), Status.OK, "Linux x86_64 (and WSL2): supported"),
    (("linux", "x86_64", "5.15.153.1-microsoft-standard-WSL2"), Status.OK, "(WSL2): supported"),
    (("darwin", "arm64", "24.1.0"), Status.OK, "macOS Apple Silicon: supported"),
    (("darwin", "x86_64", "23.6.0"), Status.FAIL, "TensorFlow 2.21 has no macOS x86_64 wheel"),
    (("linux", "riscv64", "6.6"), Status.FAIL, "linux riscv64 is not a supported laptop"),
])
def test_platform(monkeypatch: pytest.MonkeyPatch, host: tuple[str, str, str], status: Status,
                  words: str) -> None:
    monkeypatch.setattr(local, "host", lambda: host)
    result = local.check_platform()
    assert result.status == status and words in result.detail
    if status == Status.FAIL:
        assert line("platform", result).endswith(
            "; fix: use a supported laptop (README: Which laptop?)")


def test_platform_warns_about_a_clone_on_the_windows_drive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "host", lambda: ("linux", "x86_64", "5.15.1-microsoft-WSL2"))
    monkeypatch.setattr(local.labs, "REPO", Path("/mnt/c/Users/ana/tf-k8s-workshop"))
    result = local.check_platform()
    assert result == warn("Linux x86_64 (and WSL2), but the kit is at "
                          "/mnt/c/Users/ana/tf-k8s-workshop, on the Windows drive",
                          "clone it inside WSL (under ~), not under /mnt/c")


def test_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "python_version", lambda: "3.12.7")
    assert local.check_python().status == Status.OK
    monkeypatch.setattr(local, "python_version", lambda: "3.10.14")
    result = local.check_python()
    assert result.status == Status.FAIL and "Python 3.10.14" in result.detail
    assert result.fix == "rm -rf .venv && make venv PYTHON=python3.13"


# --- TensorFlow -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("probe", "status", "detail", "fix"), [
    (local.TfImport(TF, 4.2), Status.OK, f"TensorFlow {TF}, import 4.2 s", ""),
    (local.TfImport(TF, 9.0), Status.WARN, "slow (over 7.5 s)", "close other programs"),
    (local.TfImport(TF, 16.0), Status.WARN, "may not start within the 60 s stall window",
     "--stall-timeout 180"),
    (local.TfImport(TF, 61.0), Status.FAIL, "longer than the labs' 60 s stall window",
     "local SSD"),
    (local.TfImport("0.9.0", 3.0), Status.WARN, f"verified with {TF}", "make venv"),
    (local.TfImport(None, 0.1, "ModuleNotFoundError: No module named 'tensorflow'"),
     Status.FAIL, "TensorFlow is not installed in this virtualenv", "make venv"),
    (local.TfImport(None, 0.5, "the interpreter died of SIGILL"), Status.FAIL, "(AVX)",
     "--target k8s"),
    (local.TfImport(None, 120, "no answer within 120 s"), Status.FAIL,
     "import tensorflow failed: no answer within 120 s", "--force-reinstall"),
])
def test_tensorflow(monkeypatch: pytest.MonkeyPatch, probe: local.TfImport, status: Status,
                    detail: str, fix: str) -> None:
    monkeypatch.setattr(local, "import_tensorflow", lambda: probe)
    monkeypatch.setattr(local, "pinned_tensorflow", lambda: TF)
    result = local.check_tensorflow()
    assert (result.status, detail in result.detail, fix in result.fix) == (status, True, True)


def test_a_slow_import_is_measured_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first import after a reboot reads TensorFlow from disk: a slow one is repeated and
    the faster taken."""
    probes = iter([local.TfImport(TF, 20.0), local.TfImport(TF, 4.0)])
    monkeypatch.setattr(local, "import_tensorflow", lambda: next(probes))
    monkeypatch.setattr(local, "pinned_tensorflow", lambda: TF)
    assert local.check_tensorflow() == ok(f"TensorFlow {TF}, import 4.0 s")


def test_the_import_probe_on_a_python_without_tensorflow() -> None:
    bare = "/usr/bin/python3"
    if not Path(bare).is_file():
        pytest.skip("no system python3 to stand in for a venv without TensorFlow")
    probe = local.import_tensorflow(python=bare)
    assert probe.version is None and "No module named 'tensorflow'" in probe.error


def test_the_import_probe_on_an_interpreter_that_dies_of_sigill(tmp_path: Path) -> None:
    crashing = tmp_path / "python"
    crashing.write_text("#!/bin/sh\nkill -ILL $$\n")
    crashing.chmod(0o755)
    assert local.import_tensorflow(python=str(crashing)).error == \
        "the interpreter died of SIGILL"


def test_the_import_probe_times_out(tmp_path: Path) -> None:
    stuck = tmp_path / "python"
    stuck.write_text("#!/bin/sh\nexec sleep 30\n")
    stuck.chmod(0o755)
    probe = local.import_tensorflow(timeout_s=0.5, python=str(stuck))
    assert probe == local.TfImport(None, 0.5, "no answer within 0.5 s")


# --- memory and disk ------------------------------------------------------------------------------
@pytest.mark.parametrize(("memory", "status", "fix"), [
    ((8192, 16384), Status.OK, ""),
    ((2600, 16384), Status.WARN, "close other programs before the labs"),
    ((1500, 16384), Status.FAIL, "close other programs (browser tabs, IDEs, containers)"),
    ((1500, 1900), Status.FAIL, "this laptop has too little memory: run the labs on the cluster"),
])
def test_memory(monkeypatch: pytest.MonkeyPatch, memory: tuple[int, int], status: Status,
                fix: str) -> None:
    monkeypatch.setattr(local, "memory_mib", lambda: memory)
    result = local.check_memory()
    assert (result.status, result.fix) == (status, fix)
    assert "the labs peak at 1.7 GiB" in result.detail


def test_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "disk_free_mib", lambda _: 100)
    result = local.check_disk()
    assert result.status == Status.FAIL and "a day of runs needs 256 MiB" in result.detail
    assert "labctl clean --all" in result.fix
    monkeypatch.setattr(local, "disk_free_mib", lambda _: 700)
    assert local.check_disk().status == Status.WARN
    monkeypatch.setattr(local, "disk_free_mib", lambda _: 50_000)
    assert local.check_disk().status == Status.OK


def test_disk_of_a_state_dir_not_made_yet(tmp_path: Path) -> None:
    assert local.disk_free_mib(tmp_path / "not" / "yet") > 0


# --- loopback ports -------------------------------------------------------------------------------
def test_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    assert local.largest_default_cluster() == 5  # lab 12: chief, 2 ps, 2 workers
    monkeypatch.setattr(local, "loopback", lambda n: "")
    assert local.check_ports() == ok("5 free ports on 127.0.0.1, each listened on and reached")
    monkeypatch.setattr(local, "loopback", lambda n: "OSError: Cannot assign requested address")
    result = local.check_ports()
    assert result.status == Status.FAIL and "Cannot assign requested address" in result.detail
    assert "sudo ip link set lo up" in result.fix


def test_the_loopback_probe_for_real(monkeypatch: pytest.MonkeyPatch) -> None:
    assert local.loopback(3) == ""
    with socket.create_server(("127.0.0.1", 0)) as taken:  # a port someone else holds
        port = taken.getsockname()[1]
        monkeypatch.setattr(local.ports, "free_ports", lambda n: [port])
        assert "Address already in use" in local.loopback(1)


# --- proxy ----------------------------------------------------------------------------------------
PROXY = "http://proxy.example:3128"


@pytest.mark.parametrize(("env", "status", "words"), [
    ({}, Status.OK, "no proxy variable set"),
    ({"https_proxy": PROXY}, Status.WARN, "no_proxy lacks 127.0.0.1, localhost"),
    ({"http_proxy": PROXY, "no_proxy": "localhost,127.0.0.1,.corp"}, Status.OK, "exempts"),
    ({"https_proxy": PROXY, "no_proxy": "127.0.0.0/8,localhost"}, Status.OK, "exempts"),
    ({"https_proxy": PROXY, "no_proxy": "*"}, Status.WARN, "no_proxy lacks"),
    ({"https_proxy": PROXY, "no_proxy": "localhost"}, Status.WARN, "lacks 127.0.0.1:"),
    ({"https_proxy": PROXY, "no_proxy": "localhost,127.0.0.1", "no_grpc_proxy": ".corp"},
     Status.WARN, "no_grpc_proxy lacks"),
    ({"grpc_proxy": "", "https_proxy": PROXY}, Status.OK, "grpc_proxy is empty"),
    ({"https_proxy": "https://proxy.example:3128"}, Status.OK, "not an http:// URI"),
    ({"HTTPS_PROXY": PROXY}, Status.OK, "gRPC reads only the lower-case names"),
])
def test_proxy(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], status: Status,
               words: str) -> None:
    monkeypatch.setattr(local, "environment", lambda: env)
    result = local.check_proxy()
    assert result.status == status and words in result.detail, result
    if status == Status.WARN:
        name = "no_grpc_proxy" if "no_grpc_proxy" in env else "no_proxy"
        assert result.fix.startswith(f'export {name}="${name},localhost,127.0.0.1"')


GRPC_CLIENT = textwrap.dedent("""\
    import threading
    from concurrent import futures
    import grpc
    server = grpc.server(futures.ThreadPoolExecutor(1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ENDS = {grpc.ChannelConnectivity.READY: "direct",
            grpc.ChannelConnectivity.TRANSIENT_FAILURE: "proxied"}  # the proxy refused
    for host in ("127.0.0.1", "localhost"):
        ended, states = threading.Event(), []
        def seen(state):
            if state in ENDS:
                states.append(ENDS[state])
                ended.set()
        channel = grpc.insecure_channel(f"{host}:{port}")
        channel.subscribe(seen, try_to_connect=True)
        ended.wait(30)
        print(host, states[0] if states else "undecided")
""")


@pytest.mark.slow
def test_the_proxy_verdict_is_what_grpc_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """For each proxy set-up, real gRPC (grpcio, TensorFlow's dependency, built on the same gRPC
    core) reaches a loopback server directly exactly when the check says ok. The proxy is a
    port nothing listens on: a proxied channel fails at once, a direct one becomes ready."""
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
        cases = [{}, {"https_proxy": proxy}, {"http_proxy": proxy},
                 {"https_proxy": proxy, "no_proxy": "localhost,127.0.0.1"},
                 {"https_proxy": proxy, "no_proxy": "127.0.0.0/8,localhost"},
                 {"https_proxy": proxy, "no_proxy": "*"},
                 {"https_proxy": proxy, "no_proxy": "localhost,127.0.0.1", "no_grpc_proxy": "x"},
                 {"grpc_proxy": "", "https_proxy": proxy}, {"HTTPS_PROXY": proxy}]
        base = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        procs = [subprocess.Popen([sys.executable, "-c", GRPC_CLIENT], env={**base, **env},
                                  stdout=subprocess.PIPE, text=True) for env in cases]
        outputs = [p.communicate(timeout=60)[0] for p in procs]
    for env, out in zip(cases, outputs, strict=True):
        assert "undecided" not in out and len(out.split()) == 4, (env, out)
        direct = out.split().count("direct") == 2
        monkeypatch.setattr(local, "environment", lambda env=env: env)
        verdict = local.check_proxy().status
        assert (verdict == Status.OK) == direct, (env, out, verdict)
    # the set-up itself: with the proxy alone, gRPC does go through it
    assert out.count("proxied") == 0 and outputs[1].count("proxied") == 2


# --- the launch smoke test ------------------------------------------------------------------------
def test_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "smoke_launch", lambda: local.Launch(0, 0.6, "labctl: succeeded"))
    assert local.check_launch() == ok(
        "`labctl launch --workers 2` ran a 2-process program in 0.6 s")
    said = ("labctl: failed: worker:0 exit 1 (restart limit 0 reached)\n"
            "labctl: last lines of worker:0:\n    OSError: boom\n"
            "labctl: logs in state/runs/launch/1/logs\n")
    monkeypatch.setattr(local, "smoke_launch", lambda: local.Launch(1, 2.0, said))
    assert local.check_launch() == fail(
        "`labctl launch --workers 2` of a tiny program exited 1: failed: worker:0 exit 1 "
        "(restart limit 0 reached) (its last output: OSError: boom)",
        "send `labctl doctor --json` to the instructor")
    monkeypatch.setattr(local, "smoke_launch", lambda: local.Launch(None, 60, ""))
    assert "did not end: no output" in local.check_launch().detail


def test_the_smoke_launch_for_real_passes_then_fails_and_leaves_nothing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(local.tempfile, "tempdir", str(tmp_path))
    good = local.smoke_launch()
    assert good.exit_code == 0, good.output
    monkeypatch.setattr(local, "SMOKE_PROGRAM", "import sys\nsys.exit('worker broke')\n")
    bad = local.smoke_launch()
    assert bad.exit_code == 1 and "worker broke" in bad.output
    assert list(tmp_path.iterdir()) == []  # its run directories went with it
    assert leftovers(tmp_path) == []


# --- the command: lines, verdict, exit code, JSON -------------------------------------------------
def fixed(*results: Result) -> list[Check]:
    return [Check(f"check {i}", lambda r=r: r) for i, r in enumerate(results)]


def test_lines_and_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    checks = fixed(ok("fine"), warn("meh", "do x"), ok("fine too"))
    assert doctor.run_checks(checks, as_json=False, cluster=False) == 0
    assert capsys.readouterr().out.splitlines() == [
        "OK    check 0  fine",
        "WARN  check 1  meh; fix: do x",
        "OK    check 2  fine too",
        "READY: 2 check(s) ok, 1 warning(s) worth fixing",
    ]
    assert doctor.run_checks(fixed(ok("a"), fail("broken", "mend it")), False, False) == 1
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "FAIL  check 1  broken; fix: mend it",
        "NOT READY: 1 check(s) failed (check 1); fix the FAIL lines, then run `labctl doctor` "
        "again",
    ]


def test_a_check_that_raises_is_a_fail_line_not_a_traceback() -> None:
    def boom() -> Result:
        raise RuntimeError("disk on fire\n(really)")

    def usage() -> Result:
        from labctl.errors import UsageError
        raise UsageError("versions.yml has no tensorflow_version: restore it")

    rows = [doctor.run_one(Check("x", boom)), doctor.run_one(Check("y", usage))]
    assert rows[0].result == fail("the check itself broke: RuntimeError: disk on fire (really)",
                                  "send this line to the instructor")
    assert rows[1].result == fail("versions.yml has no tensorflow_version: restore it", "")
    assert doctor.exit_code(rows) == 1


def test_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    checks = fixed(ok("fine"), fail("broken", "mend it"), doctor.skip("n/a"))
    assert doctor.run_checks(checks, as_json=True, cluster=True) == 1
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == ["doctor", "cluster", "ready", "exit_code", "verdict", "counts", "checks"]
    assert (doc["doctor"], doc["cluster"], doc["ready"], doc["exit_code"]) == (1, True, False, 1)
    assert doc["counts"] == {"ok": 1, "warn": 0, "fail": 1, "skip": 1}
    assert doc["verdict"].startswith("NOT READY: 1 check(s) failed (check 1)")
    assert [list(c) for c in doc["checks"]] == [["name", "status", "detail", "fix", "seconds"]] * 3
    assert doc["checks"][1] | {"seconds": 0} == {"name": "check 1", "status": "fail",
                                                 "detail": "broken", "fix": "mend it",
                                                 "seconds": 0}


def all_local_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "checks", lambda: fixed(ok("a"), ok("b")))


def test_cli_doctor(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    all_local_ok(monkeypatch)
    assert cli.main(["doctor"]) == 0
    assert capsys.readouterr().out.endswith("READY: 2 check(s) ok\n")
    assert cli.main(["doctor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ready"] is True
    monkeypatch.setattr(local, "checks", lambda: fixed(ok("a"), fail("no", "yes")))
    assert cli.main(["doctor", "--json"]) == 1
    assert cli.main(["doctor", "--kubeconfig", "kc"]) == 2
    assert capsys.readouterr().err == \
        "labctl: error: doctor --kubeconfig goes with --cluster\n"


# --- real runs ------------------------------------------------------------------------------------
NAMES = ["platform", "python", "tensorflow", "memory", "disk", "loopback ports", "proxy",
         "launch"]


@pytest.mark.slow
def test_doctor_on_this_machine(tmp_path: Path) -> None:
    """The real thing, as an attendee runs it: every check runs, and none fails here."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    done = subprocess.run([*LABCTL, "doctor"], env={**env, "LABCTL_STATE_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=300, check=False)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert [ln[6:].split("  ")[0] for ln in lines[:-1]] == NAMES  # WORD, 2 spaces, name
    assert all(ln.split()[0] in ("OK", "WARN") for ln in lines[:-1])
    assert lines[-1].startswith("READY: ") and done.stderr == ""
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_doctor_on_a_deliberately_broken_laptop(tmp_path: Path) -> None:
    """A TensorFlow whose import fails (a stand-in package first on PYTHONPATH, as a broken
    install behaves) and a proxy without a loopback exemption: real probes, a NOT READY verdict
    naming the check, exit 1; the same in --json."""
    fake = tmp_path / "site" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ImportError('libtensorflow_framework.so.2: cannot open shared object file')\n")
    env = {**{k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
           "PYTHONPATH": str(tmp_path / "site"), "https_proxy": "http://proxy.invalid:3128",
           "LABCTL_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([*LABCTL, "doctor"], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout.splitlines()
    assert ("FAIL  tensorflow      import tensorflow failed: ImportError: "
            "libtensorflow_framework.so.2: cannot open shared object file; fix: reinstall: "
            "`.venv/bin/pip install --force-reinstall -e '.[labs]'`") in out
    assert any(ln.startswith("WARN  proxy ") and "https_proxy=http://proxy.invalid:3128" in ln
               for ln in out)
    assert any(ln.startswith("OK    launch ") for ln in out)  # labctl exempts its own tasks
    assert out[-1].startswith("NOT READY: 1 check(s) failed (tensorflow)")
    done = subprocess.run([*LABCTL, "doctor", "--json"], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    doc = json.loads(done.stdout)
    assert done.returncode == doc["exit_code"] == 1 and not doc["ready"]
    assert {c["name"]: c["status"] for c in doc["checks"]}["tensorflow"] == "fail"
