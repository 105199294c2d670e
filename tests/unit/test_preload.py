"""The pre-imported interpreter (labctl/preload.py): a forked task is the program as `python
PROGRAM` would run it, the switch back to plain processes, a server that fails, and the fork
itself under load. The lifecycle tests (test_lifecycle.py, param `preload`) run kills, restarts,
Ctrl-C and a SIGKILLed labctl against forked tasks; tests/labs runs the real labs forked."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from _labctl import LABCTL, labctl_env, leftovers

from labctl import preload, procs, taskenv

PROBE = """
    import json, os, signal, sys
    from pathlib import Path
    facts = {"preloaded": "fractions" in sys.modules, "argv": sys.argv, "path": sys.path,
             "cwd": os.getcwd(), "env": dict(os.environ), "stdin": sys.stdin.read(),
             "pgid": os.getpgid(0), "pid": os.getpid(),
             "sigint": str(signal.getsignal(signal.SIGINT))}
    from labctl import procs
    facts["mark"] = str(procs.run_processes().get(os.getpid()))
    import probe_mod
    facts["probe_mod_fresh"] = probe_mod.LOADED_BY == os.getpid()
    out = Path(sys.argv[sys.argv.index("--output-dir") + 1])
    (out / "probe.json").write_text(json.dumps(facts))
    print("probe done")
    sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
"""


def probe_labs(tmp_path: Path, preloaded: list[str]) -> Path:
    """The probe lab; a file already there as it should be is left alone (its time is part of
    what keys a server)."""
    labs = tmp_path / "labs"
    (labs / "01-probe").mkdir(parents=True, exist_ok=True)
    for path, text in [
        (labs / "probe_mod.py", "import os\nLOADED_BY = os.getpid()\n"),
        (labs / "01-probe" / "probe.py", textwrap.dedent(PROBE)),
        (labs / "01-probe" / "lab.toml", textwrap.dedent(f"""\
            title = "Probe"
            kind = "local"
            program = "probe.py"
            progress = false
            preload = {json.dumps(preloaded)}
        """)),
    ]:
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    return labs


def servers() -> list[tuple[int, str, tuple[str, ...]]]:
    """The user's running servers: (pid, key, modules)."""
    return preload._servers(preload.runtime_dir())[0]


def gone(pid: int, within_s: float = 10) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not procs.running(pid):
            return True
        time.sleep(0.05)
    return False


def run_probe(tmp_path: Path, *args: str, preloaded: list[str] | None = None,
              cwd: Path | None = None, state: Path | None = None,
              **env: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    state = state or tmp_path / "state"
    labs = probe_labs(tmp_path, ["numpy", "fractions", "probe_mod"] if preloaded is None
                      else preloaded)
    proc = subprocess.run([*LABCTL, "run", "01", *args], capture_output=True, text=True,
                          env=labctl_env(state, labs, **env), timeout=120, check=False, cwd=cwd)
    assert leftovers(state) == []
    run = state / "runs" / "01-probe" / "latest"
    found = run / "output" / "probe.json"
    return proc, (json.loads(found.read_text()) if found.is_file() else {})


def test_a_forked_task_is_the_program_as_python_would_run_it(tmp_path: Path) -> None:
    proc, facts = run_probe(tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = (tmp_path / "state" / "runs" / "01-probe" / "latest").resolve()
    program = tmp_path / "labs" / "01-probe" / "probe.py"
    assert facts["preloaded"], "the task was not forked from the server"
    assert facts["argv"] == [str(program), "--output-dir", str(run / "output")]
    assert facts["path"][0] == str(program.parent) and facts["cwd"] == str(run)
    assert facts["stdin"] == "" and facts["pgid"] == facts["pid"]  # its own session
    # its environment is the task's, not the server's, and the kernel-side mark finds it
    assert facts["env"]["LABCTL_RUN"] == str(run) and procs.PRELOAD_DIR_ENV not in facts["env"]
    assert facts["env"]["PYTHONUNBUFFERED"] == "1"
    assert facts["mark"] == str(run)
    # a module of the labs directory is imported afresh by each task, not inherited
    assert facts["probe_mod_fresh"]
    assert "probe done" in (run / "logs" / "main.log").read_text()
    # the server stays for the next command, outside the state directory
    assert ("numpy", "fractions", "probe_mod") in [mods for _pid, _key, mods in servers()]
    assert not (tmp_path / "state" / "preload").exists()


def test_forked_and_plain_tasks_see_the_same_path_and_environment(tmp_path: Path) -> None:
    # What a user's shell may hold: an empty PYTHONPATH entry (the cwd, for CPython), a relative
    # one, a TF_CONFIG of their own; and an import that sets an environment variable itself.
    extra, elsewhere = tmp_path / "extra", tmp_path / "elsewhere"
    extra.mkdir()
    elsewhere.mkdir()
    (extra / "envsetter.py").write_text("import os\nos.environ['PROBE_SET'] = 'by-import'\n")
    env = {"PYTHONPATH": f":{extra}:extra", "TF_CONFIG": "{}"}
    seen = {}
    for mode in ("1", "0"):
        shutil.rmtree(tmp_path / "state", ignore_errors=True)
        proc, seen[mode] = run_probe(tmp_path, preloaded=["fractions", "envsetter"],
                                     cwd=elsewhere, LABCTL_PRELOAD=mode, **env)
        assert proc.returncode == 0 and "plain processes" not in proc.stderr, proc.stderr
    forked, plain = seen["1"], seen["0"]
    assert forked["preloaded"] and not plain["preloaded"]
    for facts in (forked, plain):  # each run has a directory of its own, the task's cwd
        facts["path"] = [p.replace(facts["cwd"], "RUN") for p in facts["path"]]
    assert forked["path"] == plain["path"] and str(elsewhere) not in forked["path"]
    # labs/ first (labctl's), then the user's entries as CPython makes them: absolute, "" = cwd
    assert forked["path"][1:5] == [str(tmp_path / "labs"), "RUN", str(extra), "RUN/extra"]
    assert forked["env"].pop("PROBE_SET") == "by-import"
    for facts in (forked, plain):
        del facts["env"]["LABCTL_RUN"], facts["env"]["LABCTL_PRELOAD"]  # what differs by design
    assert forked["env"] == plain["env"] and forked["sigint"] == plain["sigint"]


@pytest.mark.parametrize("how", [("--no-preload",), ("LABCTL_PRELOAD=0",)])
def test_the_switch_starts_plain_processes(tmp_path: Path, how: tuple[str]) -> None:
    args, env = ((), {"LABCTL_PRELOAD": "0"}) if "=" in how[0] else (how, {})
    proc, facts = run_probe(tmp_path, *args, **env)
    assert proc.returncode == 0, proc.stderr
    assert facts["preloaded"] is False and facts["mark"] == facts["env"]["LABCTL_RUN"]


def test_a_task_exit_code_and_output_pass_through(tmp_path: Path) -> None:
    proc, facts = run_probe(tmp_path, "--max-restarts", "0", PROBE_EXIT="7")
    assert proc.returncode == 1 and facts["preloaded"]
    assert "exit 7" in proc.stderr and "probe done" in proc.stderr


def test_a_server_that_fails_to_import_leaves_plain_processes(tmp_path: Path) -> None:
    proc, facts = run_probe(tmp_path, preloaded=["fractions", "no_such_module_here"])
    assert proc.returncode == 0, proc.stderr
    assert facts["preloaded"] is False
    assert "labctl: the pre-imported interpreter failed (ModuleNotFoundError: No module named " \
           "'no_such_module_here'): tasks start as plain processes" in proc.stderr


def test_bad_switch_values_are_refused_in_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    labs = probe_labs(tmp_path, ["json"])
    for args, env, said in [
        ((), {"LABCTL_PRELOAD": "yes"}, "LABCTL_PRELOAD='yes': use 1"),
        (("--no-preload", "--target", "docker"), {}, "--target docker does not use --no-preload"),
    ]:
        proc = subprocess.run([*LABCTL, "run", "01", *args], capture_output=True, text=True,
                              env=labctl_env(state, labs, **env), timeout=60, check=False)
        assert proc.returncode == 2 and said in proc.stderr and len(proc.stderr.splitlines()) == 1
        assert "Traceback" not in proc.stderr and not (state / "runs").exists()


def test_bad_preload_in_lab_toml_names_the_field(tmp_path: Path) -> None:
    labs = probe_labs(tmp_path, ["json"])
    toml = labs / "01-probe" / "lab.toml"
    toml.write_text(toml.read_text().replace('["json"]', '"tensorflow"'))
    proc = subprocess.run([*LABCTL, "run", "01"], capture_output=True, text=True, timeout=60,
                          env=labctl_env(tmp_path / "state", labs), check=False)
    assert proc.returncode == 2
    assert "lab.toml: preload must be a list of module names" in proc.stderr


def test_hundreds_of_forks_under_load_neither_hang_nor_lose_an_exit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    env = taskenv.local({})
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    server = preload.Server(env, ("numpy",))
    try:
        assert server.usable(env) and not server.usable({**env, "OTHER": "1"})
        assert server.usable({**env, "TF_CONFIG": "{}", "LABCTL_RUN": "/x"})  # per task only
        program = tmp_path / "child.py"
        program.write_text("import os, sys\nprint('child', os.getpid())\n"
                           "sys.exit(int(sys.argv[1]) % 5)\n")
        started = time.monotonic()
        codes = {}
        for batch in range(60):
            tasks = [server.start([sys.executable, str(program), str(batch * 5 + i)], env,
                                  tmp_path) for i in range(5)]
            for task in tasks:
                codes[task.pid] = (task.wait(timeout=30), task.stdout.read())
                task.stdout.close()
        assert len(codes) == 300 and time.monotonic() - started < 240
        assert sorted(c for c, _ in codes.values()) == sorted(list(range(5)) * 60)
        assert all(out == f"child {pid}\n" for pid, (_, out) in codes.items())
        assert set(server.threads_at_fork) == {1}
        # a killed task is reported the way subprocess reports it
        sleeper = tmp_path / "sleep.py"
        sleeper.write_text("import time\ntime.sleep(60)\n")
        task = server.start([sys.executable, str(sleeper)], env, tmp_path)
        os.killpg(task.pid, signal.SIGKILL)
        assert task.wait(timeout=10) == -signal.SIGKILL
        # a fork the server cannot make (here: no file descriptor left) is refused, not fatal
        served = psutil.Process(server.pid)  # the session, which forks the tasks
        soft, hard = served.rlimit(psutil.RLIMIT_NOFILE)
        served.rlimit(psutil.RLIMIT_NOFILE, (served.num_fds() + 1, hard))  # the request's pipe
        with pytest.raises(OSError, match=r"could not fork: .*Too many open files"):
            server.start([sys.executable, str(sleeper)], env, tmp_path)
        served.rlimit(psutil.RLIMIT_NOFILE, (soft, hard))
        task = server.start([sys.executable, str(program), "3"], env, tmp_path)
        assert task.wait(timeout=30) == 3
    finally:
        for proc in load:
            proc.kill()
        server.close()
    assert gone(server.pid), "the session outlived its labctl"
    assert not list(server.key.parent.glob("*/marks/*")), "a task's mark stayed"


def test_the_next_command_forks_from_the_same_server(tmp_path: Path) -> None:
    # A module outside labs/ counts its imports: labs/ modules are imported afresh per task.
    extra = tmp_path / "extra"
    extra.mkdir()
    counted = tmp_path / "imports"
    (extra / "counted.py").write_text(f"open({str(counted)!r}, 'a').write('x')\n")
    env = {"PYTHONPATH": str(extra)}
    mods = ("fractions", "counted")
    firsts = []
    for state in ("one", "two"):  # a state directory of its own: LABCTL_* is no part of the key
        proc, facts = run_probe(tmp_path, preloaded=list(mods), state=tmp_path / state, **env)
        assert proc.returncode == 0 and facts["preloaded"], proc.stderr
        firsts.append([s for s in servers() if s[2] == mods])
    assert firsts[0] == firsts[1] and len(firsts[0]) == 1
    assert counted.read_text() == "x", "the second command imported again"
    # Another environment is another server; the old one for the same modules is told to stop.
    proc, facts = run_probe(tmp_path, preloaded=list(mods), state=tmp_path / "three",
                            PROBE_OTHER="1", **env)
    assert proc.returncode == 0 and facts["preloaded"], proc.stderr
    assert counted.read_text() == "xx" and gone(firsts[0][0][0])
    now = [s for s in servers() if s[2] == mods]
    assert len(now) == 1 and now[0][0] != firsts[0][0][0]


def test_what_keys_a_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    labs = tmp_path / "labs"
    (labs / "01-lab").mkdir(parents=True)
    (labs / "mod.py").write_text("")
    env = {"PYTHONPATH": str(labs), "HOME": "/h"}
    mods = ("mod", "json")
    first = preload.key(env, mods)
    assert preload.key({**env, "LABCTL_STATE_DIR": "/x", "TF_CONFIG": "{}"}, mods) == first
    assert preload.key({**env, "HOME": "/other"}, mods) != first
    assert preload.key(env, ("json",)) != first
    # a copy of the directory that keeps the files' times holds the same, wherever it is
    shutil.copytree(labs, tmp_path / "copy")
    assert preload.key({**env, "PYTHONPATH": str(tmp_path / "copy")}, mods) == first
    (tmp_path / "copy" / "json.py").write_text("")  # it would shadow a module the server imports
    assert preload.key({**env, "PYTHONPATH": str(tmp_path / "copy")}, mods) != first
    os.utime(labs / "mod.py", ns=(1, 1))  # the module changed (a pip upgrade, an edit)
    first = preload.key(env, mods)
    assert first != preload.key({**env, "PYTHONPATH": str(tmp_path / "copy")}, mods)
    # what a shell keeps for itself differs between two terminals, and no import reads it
    assert preload.key({**env, "OLDPWD": "/x", "SHLVL": "3", "_": "/bin/labctl"}, mods) == first
    # a package installed next to the others (a site-packages directory changes)
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    first = preload.key(env, mods)
    (site / "newpkg").mkdir()
    os.utime(site, ns=(2, 2))
    assert preload.key(env, mods) != first


def test_a_server_exits_once_idle_after_its_last_session(tmp_path: Path) -> None:
    key = preload.runtime_dir() / "idletest"
    own = key.parent / "idletest.own"
    (own / "marks").mkdir(parents=True)
    env = {**os.environ, procs.PRELOAD_DIR_ENV: str(own / "marks")}
    started = subprocess.run([sys.executable, "-P", "-m", "labctl.forkserver", str(key), "0.5",
                              "json"],
                             env=env, timeout=60, check=False)
    assert started.returncode == 0  # detached: it listens from here on
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(str(key.parent / "idletest.sock"))
    hello = json.loads(sock.recv(4096))
    server = json.loads((own / "info.json").read_text())["pid"]
    time.sleep(1.5)  # three times IDLE_S: a server with a session open is not idle
    assert hello["ready"] and procs.running(server) and procs.running(hello["pid"])
    assert (key.parent / "idletest.sock").exists()
    sock.close()
    assert gone(hello["pid"]) and gone(server) and not own.exists()
    assert not (key.parent / "idletest.sock").exists()


def test_clean_stops_the_servers_and_a_running_session_ends_first(tmp_path: Path) -> None:
    proc, facts = run_probe(tmp_path, preloaded=["fractions"])
    assert facts["preloaded"], proc.stderr
    before = servers()
    state = tmp_path / "state"
    one_lab = subprocess.run([*LABCTL, "clean", "01"], capture_output=True, text=True,
                             timeout=60, env=labctl_env(state, tmp_path / "labs"), check=False)
    assert one_lab.returncode == 0 and servers() == before
    # A session that is running a task keeps it through the stop.
    env = taskenv.local({})
    session = preload.Server(env, ("fractions",))
    sleeper = tmp_path / "sleep.py"
    sleeper.write_text("import time\ntime.sleep(3)\n")
    try:
        assert session.usable(env)
        server = psutil.Process(session.pid).ppid()
        task = session.start([sys.executable, str(sleeper)], env, tmp_path)
        done = subprocess.run([*LABCTL, "clean"], capture_output=True, text=True, timeout=60,
                              env=labctl_env(state, tmp_path / "labs"), check=False)
        assert done.returncode == 0, done.stderr
        assert f"stopped {len(before)} pre-imported interpreter(s)" in done.stdout
        # The stopped server let go of its key: the next command starts a new one at once.
        second = preload.Server(env, ("fractions",))
        try:
            assert second.usable(env) and psutil.Process(second.pid).ppid() != server
        finally:
            second.close()
        assert task.wait(timeout=30) == 0 and procs.running(server)
    finally:
        session.close()
    assert gone(server)


def test_a_runtime_directory_open_to_others_is_not_used(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    (runtime / "labctl").mkdir(parents=True, mode=0o755)
    (runtime / "labctl").chmod(0o755)
    proc, facts = run_probe(tmp_path, XDG_RUNTIME_DIR=str(runtime))
    assert proc.returncode == 0 and facts["preloaded"] is False
    assert f"{runtime / 'labctl'} is not a directory of yours closed to other users): tasks " \
           "start as plain processes" in proc.stderr


def test_no_module_in_the_working_directory_shadows_the_servers(tmp_path: Path) -> None:
    # `python -m` would put the cwd first on sys.path: the server runs with -P.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "fractions.py").write_text("raise SystemExit('the cwd shadowed fractions')\n")
    proc, facts = run_probe(tmp_path, preloaded=["fractions"], cwd=cwd)
    assert proc.returncode == 0 and "plain processes" not in proc.stderr, proc.stderr
    assert facts["preloaded"]


def test_a_stop_during_the_import_serves_the_waiting_labctl_first(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "slow.py").write_text("import time\ntime.sleep(3)\n")
    state = tmp_path / "state"
    labs = probe_labs(tmp_path, ["fractions", "slow"])
    run = subprocess.Popen([*LABCTL, "run", "01"], env=labctl_env(state, labs,
                                                                  PYTHONPATH=str(extra)),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not [s for s in servers() if s[2] == ("fractions", "slow")]:
        assert time.monotonic() < deadline, "no server started"
        time.sleep(0.05)
    [(server, _key, _mods)] = [s for s in servers() if s[2] == ("fractions", "slow")]
    assert server in preload.stop_all()  # while it imports
    _out, err = run.communicate(timeout=120)
    found = state / "runs" / "01-probe" / "latest" / "output" / "probe.json"
    assert run.returncode == 0 and "plain processes" not in err, err
    assert json.loads(found.read_text())["preloaded"] and gone(server)
    assert leftovers(state) == []
