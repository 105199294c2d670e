"""The pre-imported interpreter's process: import TensorFlow once, then fork every lab task from it.

`python -P -m labctl.forkserver KEY IDLE_S MODULE...` (labctl.preload starts it, not a user)
takes KEY.lock, listens on KEY.sock, detaches, imports MODULE... and then forks a *session* for
each labctl that connects. A session forks that labctl's tasks, each of which runs its lab
program as `python PROGRAM ARGS` would. The server outlives the labctl that started it, so the
next `labctl run` forks its tasks at once. Once it has been idle for IDLE_S (no connection and
no session), or on SIGTERM (`labctl clean`), it stops listening and lets go of the lock, so that
a new server may start at once, and exits when its last session ends. Its own directory (the
parent of PRELOAD_DIR_ENV, made by labctl) holds info.json and its tasks' marks.

Why the fork is safe:
- The server and its sessions have one thread when they fork: importing TensorFlow starts none,
  and numpy's OpenBLAS stops its worker pool around fork(), by a pthread_atfork handler of its
  own (OpenBLAS driver/others/memory.c, openblas_fork_handler). A session reports its thread
  count at every fork; tests/unit/test_preload.py checks that it is 1.
- No TensorFlow runtime exists yet: neither ever runs an op, so no eager context, thread pool or
  gRPC channel is copied into a task.
- A task sees what a fresh interpreter would: its own environment, argv, sys.path, working
  directory and stdio, default signal handlers, and `labkit` imported afresh. What TensorFlow
  and Keras read while they are imported (TF_CPP_MIN_LOG_LEVEL, TF_ENABLE_ONEDNN_OPTS,
  KERAS_HOME, ...) comes from the server's environment, which is every task's own but for
  labctl's variables and the shell's bookkeeping: labctl.preload keys its servers by that
  environment, the interpreter, the files of the modules and of labctl, and sys.path. It runs
  with -P: no module in its working directory shadows a real one. What the imports set in
  os.environ (TensorFlow sets TF2_BEHAVIOR) is set in each task too.

Supervision: a session kills its tasks' process groups when its labctl's connection closes (the
kernel closes it when labctl dies, however it dies), and each task dies with its session
(PR_SET_PDEATHSIG) and leads a session of its own. The kernel shows a forked task's environment
as the server's (/proc/PID/environ is a copy taken at exec), so a task also writes its run to
PRELOAD_DIR_ENV/PID, where `procs.run_processes` looks it up.

Protocol (SOCK_SEQPACKET, one JSON message each): the session sends {"ready": true, "pid",
"server"} once (its pid and the server's);
labctl sends {"token", "argv", "env", "cwd", "sigint_ignored"} with the task's output pipe
attached; the session answers {"token", "pid", "threads"} for each fork (or {"token", "error"}
when fork fails: labctl starts that task plainly) and {"token", "exit"} when a task ends (exit <
0: killed by that signal, as subprocess reports it). When labctl shuts its end, the session kills
what is left, reaps it and closes.
"""

from __future__ import annotations

import contextlib
import fcntl
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
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from labctl import procs
from labctl.procs import PRELOAD_DIR_ENV, RUN_ENV

INFO = "info.json"  # in the server's own directory: {"pid", "key", "modules"}
MAX_MESSAGE = 1 << 20
_CRED = struct.Struct("3i")  # SO_PEERCRED's struct ucred: pid, uid, gid


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


def key_file(key: Path, kind: str) -> Path:
    """KEY.lock (held by the server that listens), KEY.sock, KEY.log (its stderr)."""
    return key.with_name(f"{key.name}.{kind}")


def python_path(cwd: str, value: str) -> list[str]:
    """PYTHONPATH's entries as CPython puts them on sys.path: absolute, an empty one the cwd."""
    return [os.path.abspath(os.path.join(cwd, p)) for p in value.split(os.pathsep)] if value \
        else []


# --- the server ----------------------------------------------------------------------------------


def _take_lock(key: Path) -> int | None:
    """KEY's lock, held while the server listens (its sessions close their copy); None when
    another server holds it."""
    fd = os.open(key_file(key, "lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _listen(key: Path) -> socket.socket:
    key_file(key, "sock").unlink(missing_ok=True)  # a dead server's: the lock is ours
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(key_file(key, "sock")))
    listener.listen(64)
    listener.setblocking(False)
    return listener


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
    own = set(python_path(os.getcwd(), os.environ.get("PYTHONPATH", "")))
    base = [p for p in sys.path if p not in own]  # -P: no working directory in front
    return Imported(base, env_set)


def _wakeups(*signals: signal.Signals) -> int:
    """A pipe that each of `signals` writes its number to; returns the read end."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    for sig in signals:
        signal.signal(sig, lambda *_: None)  # a handler, so that the wakeup fd is written
    signal.set_wakeup_fd(wake_w)
    return wake_r


def _forget_wakeups(wake_r: int, *signals: signal.Signals) -> None:
    os.close(signal.set_wakeup_fd(-1))
    os.close(wake_r)
    for sig in signals:
        signal.signal(sig, signal.SIG_DFL)


def _sessions(key: Path, own: Path, listener: socket.socket, lock: int, wake_r: int,
              idle_s: float) -> socket.socket | None:
    """Fork a session per labctl that connects, until idle or told to stop (SIGTERM on
    `wake_r`, maybe while importing) and every session has ended. Returns only in a session,
    with its labctl's connection."""
    sessions: set[int] = set()
    last = time.monotonic()
    live: socket.socket | None = listener
    while live is not None or sessions:
        timeout = None if sessions else max(0.0, last + idle_s - time.monotonic())
        ready = select.select([wake_r, *([live] if live else [])], [], [], timeout)[0]
        stopping = not ready and not sessions  # idle
        if wake_r in ready:
            stopping = signal.SIGTERM in os.read(wake_r, 4096) or stopping
        ended = _ended() if sessions else set()
        if ended:
            sessions -= ended
            last = time.monotonic()
        if live is None:
            continue
        if stopping:
            # No new labctl finds the socket; one that has already connected is still served.
            key_file(key, "sock").unlink(missing_ok=True)
        while True:
            try:
                conn, _addr = live.accept()
            except BlockingIOError:
                break
            last = time.monotonic()
            _pid, uid, _gid = _CRED.unpack(conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))  # the peer's effective uid
            try:
                if uid != os.geteuid():  # the directory is private; this is the second lock
                    raise PermissionError(f"uid {uid} may not use uid {os.geteuid()}'s server")
                pid = os.fork()
            except OSError as err:  # labctl sees its connection close and starts tasks plainly
                print(f"forkserver: refused a connection: {err}", file=sys.stderr, flush=True)
                conn.close()
                continue
            if pid == 0:
                _forget_wakeups(wake_r, signal.SIGCHLD, signal.SIGTERM)
                live.close()
                os.close(lock)
                return conn
            conn.close()
            sessions.add(pid)
        if stopping:
            live.close()
            live = None
            os.close(lock)  # a new server for KEY may start while these sessions end
    shutil.rmtree(own, ignore_errors=True)
    return None


def _ended() -> set[int]:
    """The children that have ended since the last call (reaped)."""
    ended = set()
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.add(pid)


def _tell(sock: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # labctl is gone: the session ends at its next read
        sock.send(json.dumps(message).encode())


def serve(sock: socket.socket) -> Request | None:
    """A session: fork tasks on request until labctl goes; returns only in a task, with its
    request."""
    wake_r = _wakeups(signal.SIGCHLD)
    children: dict[int, int] = {}  # pid -> token
    _tell(sock, {"ready": True, "pid": os.getpid(), "server": os.getppid()})
    while True:
        readable = select.select([sock, wake_r], [], [])[0]
        if wake_r in readable:
            os.read(wake_r, 4096)
        _reap(sock, children, os.WNOHANG)
        if sock not in readable:
            continue
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 1)
        except OSError:  # ECONNRESET: labctl died with messages unread
            msg, fds = b"", []
        if not msg:  # labctl is gone or done: so are its tasks
            for pid in children:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            _reap(sock, children, 0)
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
            _tell(sock, {"token": req["token"], "error": str(err)})
            continue
        led_r, led_w = led
        if pid == 0:
            _forget_wakeups(wake_r, signal.SIGCHLD)
            os.close(led_r)
            sock.close()
            _become_task(parent, req)
            os.close(led_w)
            return Request(req["argv"], req["env"], req["cwd"], req["sigint_ignored"], fds[0])
        os.close(led_w)
        os.read(led_r, 1)  # EOF once the child leads its session (or died trying)
        os.close(led_r)
        os.close(fds[0])
        children[pid] = req["token"]
        # The session's threads through the fork (OpenBLAS's pool stopped for it): tested to be 1.
        threads = len(os.listdir("/proc/self/task"))
        _tell(sock, {"token": req["token"], "pid": pid, "threads": threads})


def _reap(sock: socket.socket, children: dict[int, int], flags: int) -> None:
    """Collect ended tasks (all of them with flags 0) and tell labctl their exit codes."""
    while children:
        try:
            pid, status = os.waitpid(-1, flags)
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
        _tell(sock, {"token": token, "exit": os.waitstatus_to_exitcode(status)})


def _become_task(session: int, req: dict[str, Any]) -> None:
    """In the fresh child: leave the session's process group, signals and marks behind."""
    os.setsid()
    procs.die_with_parent(session)
    mark = procs.mark_file(os.environ.get(PRELOAD_DIR_ENV), os.getpid())
    if mark and RUN_ENV in req["env"]:
        with contextlib.suppress(OSError):  # unmarked, the task still runs (and dies with labctl)
            mark.write_text(req["env"][RUN_ENV])
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
    extra = python_path(req.cwd, req.env.get("PYTHONPATH", ""))
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
    try:
        key, idle_s, modules = Path(argv[0]), float(argv[1]), argv[2:]
        own = Path(os.environ[PRELOAD_DIR_ENV]).parent
    except (IndexError, ValueError, KeyError):
        print("usage: python -P -m labctl.forkserver KEY IDLE_S [MODULE...] with "
              f"{PRELOAD_DIR_ENV} set (labctl starts it)", file=sys.stderr)
        return 2
    lock = _take_lock(key)
    if lock is None:  # another server has KEY: labctl connects to that one
        shutil.rmtree(own, ignore_errors=True)
        return 0
    listener = _listen(key)
    if os.fork():
        os._exit(0)  # labctl waits for this much: the socket exists, connections queue on it
    # A stop asked for during the import waits for it: the connections queued meanwhile are
    # served first.
    wake_r = _wakeups(signal.SIGCHLD, signal.SIGTERM)
    info = own / f".{INFO}.tmp"
    info.write_text(json.dumps({"pid": os.getpid(), "key": key.name, "modules": modules,
                                "started": psutil.Process().create_time()}))
    info.replace(own / INFO)
    try:
        imported = _import_once(modules)
    except BaseException:
        # Connections waiting on the socket see it close; labctl shows the log's last line.
        key_file(key, "sock").unlink(missing_ok=True)
        shutil.rmtree(own, ignore_errors=True)
        raise
    conn = _sessions(key, own, listener, lock, wake_r, idle_s)
    if conn is None:
        return 0
    req = serve(conn)
    if req is None:
        return 0
    _run_task(req, imported)  # whatever it raises ends the task as it would a plain one
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
