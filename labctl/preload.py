"""A pre-imported interpreter for local lab tasks: import TensorFlow once, fork every task from it.

`import tensorflow` costs about 5 s of CPU in every task process, and a lab starts 2-5 of them on
a laptop's few cores. On Linux, labctl instead starts one server per invocation (`python -m
labctl.preload FD MODULE...`) that imports what the lab's `preload` lists (TensorFlow), then
forks a child per task, which runs the lab program as `python PROGRAM ARGS` would. `labctl run
all` pays the import once for every lab. `--no-preload` or LABCTL_PRELOAD=0 (see
`labctl.local.forking`) starts each task plainly again, as on macOS, and as in containers and
pods, where lab programs always run as plain `python train.py`.

Why the fork is safe:
- The server has one thread when it forks: importing TensorFlow starts none, and numpy's OpenBLAS
  stops its worker pool around fork(), by a pthread_atfork handler of its own (OpenBLAS
  driver/others/memory.c, openblas_fork_handler). The server reports its thread count at every
  fork; tests/unit/test_preload.py checks that it is 1.
- No TensorFlow runtime exists yet: the server never runs an op, so no eager context, thread pool
  or gRPC channel is copied into a task.
- A task sees what a fresh interpreter would: its own environment, argv, sys.path, working
  directory and stdio, default signal handlers, and `labkit` imported afresh. What TensorFlow
  and Keras read while they are imported (TF_CPP_MIN_LOG_LEVEL, TF_ENABLE_ONEDNN_OPTS,
  KERAS_HOME, ...) comes from the server's environment, which is every task's own but for the
  per-task variables; a task whose environment differs in anything else starts plainly. What
  the imports set in os.environ (TensorFlow sets TF2_BEHAVIOR) is set in each task too.

Supervision is the chain plain tasks have: the server dies with labctl and each task with the
server (PR_SET_PDEATHSIG both), and every task leads a session of its own. The kernel shows a
forked task's environment as the server's (/proc/PID/environ is a copy taken at exec), so a task
also writes its run to PRELOAD_DIR_ENV/PID, where `procs.run_processes` looks it up.

Protocol (a SOCK_SEQPACKET socketpair, one JSON message each): labctl sends {"token", "argv",
"env", "cwd", "sigint_ignored"} with the task's output pipe attached; the server answers
{"ready": true} once, {"token", "pid", "threads"} for each fork (or {"token", "error"} when
fork fails: labctl starts that task plainly) and {"token", "exit"} when a task ends (exit < 0:
killed by that signal, as subprocess reports it).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import json
import locale
import os
import runpy
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from labctl import procs
from labctl.labs import state_dir
from labctl.procs import PRELOAD_DIR_ENV, RUN_ENV
from labctl.rundir import pid_alive

SWITCH_ENV = "LABCTL_PRELOAD"  # 0: plain process start
PER_TASK = (RUN_ENV, "TF_CONFIG")  # read by the program at run time, never at import
READY_TIMEOUT_S = 300.0  # a cold disk can take minutes to import TensorFlow the first time
MAX_MESSAGE = 1 << 20


# --- the server (python -m labctl.preload FD) ---------------------------------------------------


@dataclass
class Request:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    sigint_ignored: bool  # as labctl's: a plain task inherits SIG_IGN through exec
    out: int  # the task's stdout and stderr


@dataclass
class Imported:
    base_path: list[str]  # the sys.path entries a task builds its own on
    env_set: dict[str, str]  # what the imports set in os.environ (TensorFlow sets TF2_BEHAVIOR)


def _python_path(cwd: str, value: str) -> list[str]:
    """PYTHONPATH's entries as CPython puts them on sys.path: absolute, an empty one the cwd."""
    return [os.path.abspath(os.path.join(cwd, p)) for p in value.split(os.pathsep)] if value \
        else []


def _import_once(modules: list[str]) -> Imported:
    """Import what the lab declares (lab.toml `preload`), in order, as its program would."""
    before = dict(os.environ)
    for name in modules:
        importlib.import_module(name)
    env_set = {k: v for k, v in os.environ.items() if before.get(k) != v}
    # The labs' own modules (labkit: it sets TensorFlow's environment defaults, so it comes
    # first) are forgotten again: each task imports them afresh, as a new interpreter would.
    labs = Path(os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or os.devnull).resolve()
    for name, module in list(sys.modules.items()):
        if Path(getattr(module, "__file__", None) or os.devnull).resolve().is_relative_to(labs):
            del sys.modules[name]
    own = set(_python_path(os.getcwd(), os.environ.get("PYTHONPATH", "")))
    base = [p for p in sys.path[1:] if p not in own]  # [0] is `-m`'s working directory
    return Imported(base, env_set)


def serve(sock: socket.socket) -> Request | None:
    """Fork tasks on request until labctl goes; returns only in a task, with its request."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the wakeup fd is written
    signal.set_wakeup_fd(wake_w)
    children: dict[int, int] = {}  # pid -> token
    sock.send(json.dumps({"ready": True}).encode())
    while True:
        readable = select.select([sock, wake_r], [], [])[0]
        if wake_r in readable:
            os.read(wake_r, 4096)
        _reap(sock, children)
        if sock not in readable:
            continue
        msg, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 1)
        if not msg:  # labctl is gone: so are its tasks
            for pid in children:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            return None
        req = json.loads(msg)
        parent = os.getpid()
        led: tuple[int, ...] = ()
        try:
            if not fds:  # no room for it (EMFILE truncates the message's descriptors)
                raise OSError("no output pipe came with the request")
            led = os.pipe()  # the child's session exists before labctl may signal it
            pid = os.fork()
        except OSError as err:  # EAGAIN under a pids limit, EMFILE, ENOMEM: labctl goes plain
            for fd in (*fds, *led):
                os.close(fd)
            sock.send(json.dumps({"token": req["token"], "error": str(err)}).encode())
            continue
        led_r, led_w = led
        if pid == 0:
            signal.set_wakeup_fd(-1)
            for fd in (wake_r, wake_w, led_r):
                os.close(fd)
            sock.close()
            _become_task(parent, req)
            os.close(led_w)
            return Request(req["argv"], req["env"], req["cwd"], req["sigint_ignored"], fds[0])
        os.close(led_w)
        os.read(led_r, 1)  # EOF once the child leads its session (or died trying)
        os.close(led_r)
        os.close(fds[0])
        children[pid] = req["token"]
        # The server's threads through the fork (OpenBLAS's pool stopped for it): tested to be 1.
        threads = len(os.listdir("/proc/self/task"))
        sock.send(json.dumps({"token": req["token"], "pid": pid, "threads": threads}).encode())


def _reap(sock: socket.socket, children: dict[int, int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        token = children.pop(pid, None)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)  # like a container: nothing a task started outlives it
        mark = procs.mark_file(os.environ.get(PRELOAD_DIR_ENV), pid)
        if mark:
            with contextlib.suppress(OSError):
                mark.unlink()
        code = os.waitstatus_to_exitcode(status)
        sock.send(json.dumps({"token": token, "exit": code}).encode())


def _become_task(server: int, req: dict[str, Any]) -> None:
    """In the fresh child: leave the server's session, signals and marks behind."""
    os.setsid()
    procs.die_with_parent(server)
    mark = procs.mark_file(os.environ.get(PRELOAD_DIR_ENV), os.getpid())
    if mark and RUN_ENV in req["env"]:
        mark.write_text(req["env"][RUN_ENV])
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN if req["sigint_ignored"]
                  else signal.default_int_handler)


def _run_task(req: Request, imported: Imported) -> None:
    """Become `python PROGRAM ARGS` in `req.cwd` with `req.env`, then run the program."""
    os.dup2(req.out, 1)
    os.dup2(req.out, 2)
    os.close(req.out)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.chdir(req.cwd)
    os.environ.clear()
    os.environ.update(imported.env_set | req.env)
    script = req.argv[1]
    extra = _python_path(req.cwd, req.env.get("PYTHONPATH", ""))
    sys.path[:] = [str(Path(script).resolve().parent), *extra, *imported.base_path]
    sys.argv = req.argv[1:]
    # stdio as CPython sets it up: PYTHONUNBUFFERED (any non-empty value is `-u`) and
    # PYTHONIOENCODING (`encoding[:errors]`) from the task's environment, else the locale's.
    unbuffered = bool(req.env.get("PYTHONUNBUFFERED"))
    encoding, _, errors = req.env.get("PYTHONIOENCODING", "").partition(":")
    encoding = encoding or locale.getpreferredencoding(False)
    sys.stdin = open(0, encoding=encoding, closefd=False)  # noqa: SIM115 (as long as the task)
    sys.stdout = _text(1, unbuffered, False, encoding, errors or "strict")
    sys.stderr = _text(2, unbuffered, True, encoding, "backslashreplace")
    runpy.run_path(script, run_name="__main__")


def _text(fd: int, unbuffered: bool, line_buffering: bool, encoding: str,
          errors: str) -> IO[str]:
    raw = io.FileIO(fd, "w", closefd=False)
    if unbuffered:
        return io.TextIOWrapper(raw, encoding=encoding, errors=errors, write_through=True)
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding=encoding, errors=errors,
                            line_buffering=line_buffering)


def main(argv: list[str]) -> int:
    if not argv or not argv[0].isdigit():
        print("usage: python -m labctl.preload FD [MODULE...] (labctl starts it)",
              file=sys.stderr)
        return 2
    sock = socket.socket(fileno=int(argv[0]))
    imported = _import_once(argv[1:])
    req = serve(sock)
    if req is None:
        return 0
    _run_task(req, imported)  # whatever it raises ends the task as it would a plain one
    return 0


# --- labctl's side -------------------------------------------------------------------------------


class Server:
    """The running server, shared by every local run of this labctl process."""

    def __init__(self, env: Mapping[str, str], modules: tuple[str, ...]) -> None:
        self.marks = _marks_dir()
        # A user's own TF_CONFIG or LABCTL_RUN is no part of it: each task brings its own.
        self.env = {k: v for k, v in env.items() if k not in PER_TASK}
        self.log = (self.marks / "server.log").open("w")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        parent = os.getpid()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labctl.preload", str(theirs.fileno()), *modules],
            env={**self.env, PRELOAD_DIR_ENV: str(self.marks)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            pass_fds=(theirs.fileno(),),
            start_new_session=True,
            preexec_fn=lambda: procs.die_with_parent(parent),
        )
        theirs.close()
        self.cond = threading.Condition()
        self.ready = False
        self.gone = False
        # Keyed by token, not pid: a pid may come back for a later task of a long `run all`.
        self.pids: dict[int, int | str] = {}  # token -> pid, or why the fork failed
        self.exits: dict[int, int] = {}  # token -> exit code
        self.threads_at_fork: list[int] = []
        self.tokens = 0
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        while True:
            try:
                msg = self.sock.recv(MAX_MESSAGE)
            except OSError:
                msg = b""
            with self.cond:
                if not msg:  # the server died: so did its tasks (PR_SET_PDEATHSIG)
                    self.gone = True
                    for token in self.pids:
                        self.exits.setdefault(token, -signal.SIGKILL)
                    self.cond.notify_all()
                    return
                reply = json.loads(msg)
                if reply.get("ready"):
                    self.ready = True
                elif "exit" in reply:
                    self.exits[reply["token"]] = reply["exit"]
                elif "error" in reply:
                    self.pids[reply["token"]] = reply["error"]
                else:
                    self.pids[reply["token"]] = reply["pid"]
                    self.threads_at_fork.append(reply["threads"])
                self.cond.notify_all()

    def usable(self, env: Mapping[str, str]) -> bool:
        """Whether a task with `env` may be forked: the server is up (waiting for its import)
        and imported TensorFlow under the same environment."""
        same = {k: v for k, v in env.items() if k not in PER_TASK} == self.env
        with self.cond:
            self.cond.wait_for(lambda: self.ready or self.gone, READY_TIMEOUT_S)
            return same and self.ready and not self.gone

    def why_not(self, env: Mapping[str, str]) -> str:
        if self.gone or not self.ready:
            log = (self.marks / "server.log").read_text(errors="replace").strip().splitlines()
            return "the pre-imported interpreter failed" + (f" ({log[-1]})" if log else "")
        diff = sorted(set(env.items()) ^ set(self.env.items()))
        return ("a task's environment differs from the pre-imported interpreter's in "
                + ", ".join(dict.fromkeys(k for k, _v in diff if k not in PER_TASK)))

    def start(self, argv: list[str], env: Mapping[str, str], cwd: Path) -> Forked:
        """Fork a task; OSError when the server cannot (labctl then starts it plainly)."""
        with self.cond:
            self.tokens += 1
            token = self.tokens
        msg = json.dumps({"token": token, "argv": argv, "env": dict(env), "cwd": str(cwd),
                          "sigint_ignored": signal.getsignal(signal.SIGINT) == signal.SIG_IGN})
        read, write = os.pipe()
        try:
            try:
                socket.send_fds(self.sock, [msg.encode()], [write])
            finally:
                os.close(write)
            with self.cond:
                self.cond.wait_for(lambda: token in self.pids or self.gone)
                pid = self.pids.get(token)
            if not isinstance(pid, int):
                raise OSError(f"the pre-imported interpreter could not fork: {pid or 'gone'}")
            return Forked(self, token, pid, open(read, encoding="utf-8", errors="replace"))
        except BaseException:
            os.close(read)
            raise

    def exit_code(self, token: int, timeout: float | None = 0) -> int | None:
        with self.cond:
            self.cond.wait_for(lambda: token in self.exits, timeout)
            return self.exits.get(token)

    def close(self) -> None:
        # shutdown, not just close: it ends the listener's blocked recv, whose reference would
        # keep the socket open, and the server sees EOF, kills what is left and exits.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.log.close()
        shutil.rmtree(self.marks, ignore_errors=True)


class Forked:
    """A forked task, with the parts of subprocess.Popen that labctl.local uses."""

    def __init__(self, server: Server, token: int, pid: int, stdout: IO[str]) -> None:
        self.server, self.token, self.pid, self.stdout = server, token, pid, stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        self.returncode = self.server.exit_code(self.token)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self.returncode = self.server.exit_code(self.token, timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"task {self.pid}", timeout or 0)
        return self.returncode


def remove_stale() -> None:
    """Remove the directories of servers whose labctl is gone (a SIGKILLed labctl runs no
    atexit); `labctl clean` and every new server call it."""
    for old in (state_dir() / "preload").glob("*-*"):
        pid = old.name.partition("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def _marks_dir() -> Path:
    """A new state/preload/PID-N for this labctl."""
    remove_stale()
    root = state_dir() / "preload"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))


_servers: dict[tuple[str, ...], Server] = {}


def server(env: Mapping[str, str], modules: tuple[str, ...]) -> Server:
    """This process's server for `modules`, started on first use (from the main thread:
    PR_SET_PDEATHSIG is tied to the thread that forks) and stopped when labctl exits."""
    found = _servers.get(modules)
    if found is None or found.gone:
        found = _servers[modules] = Server(env, modules)
        atexit.register(found.close)
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
