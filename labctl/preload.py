"""labctl's side of the pre-imported interpreter: find or start a fork server, fork tasks from it.

`import tensorflow` costs about 5 s of CPU in every task process, and a lab starts 2-5 of them on
a laptop's few cores. On Linux, labctl instead forks each lab task from a server process that has
imported what the lab's `preload` lists (TensorFlow) once: labctl.forkserver, which describes
the process and why the fork is safe. The server stays up for the user's next commands, like a
build daemon (Gradle's), so that a lab run again after a one-line change starts at once: it
exits once it has been idle for IDLE_S, and `labctl clean` (of every lab) stops it.

Servers are the user's own: they live in $XDG_RUNTIME_DIR/labctl/preload, else in a private
directory in /tmp, which must be closed to other users (whoever can connect runs code as the
user; the server checks the peer's uid too). A server serves one key: the interpreter, the
preloaded modules and their files, labctl's own files, the times of sys.path's directories (an
install changes them) and the environment but for labctl's variables (LABCTL_*, TF_CONFIG) and
the shell's bookkeeping (PWD, SHLVL, ...), which no import reads, with PYTHONPATH's directories
counted by what they hold. The server runs `python -P`: the working directory is no part of it.
A change to any of them starts a new server, and the old one for the same modules is told to
stop (it serves the labctls already connected first), so a user has one per lab kind.

`--no-preload` or LABCTL_PRELOAD=0 (see `labctl.local.forking`) starts each task plainly again, as
on macOS, and as in containers and pods, where lab programs always run as plain `python train.py`.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from importlib.machinery import PathFinder
from pathlib import Path
from typing import IO

import psutil

from labctl import forkserver
from labctl.forkserver import INFO, MAX_MESSAGE
from labctl.procs import PRELOAD_DIR_ENV, RUN_ENV

SWITCH_ENV = "LABCTL_PRELOAD"  # 0: plain process start
PER_TASK = (RUN_ENV, "TF_CONFIG")  # read by the program at run time, never at import
IDLE_S = 900.0  # a server idle this long exits: long enough to edit a program and run it again
READY_TIMEOUT_S = 300.0  # a cold disk can take minutes to import TensorFlow the first time
CONNECT_TIMEOUT_S = 30.0  # a server listens within a second of taking its lock
FORK_TIMEOUT_S = 60.0  # a session answers a fork at once; past this, the task starts plainly
CONNECT_POLL_S = 0.02


# What a shell keeps for itself and differs between two terminals of one user; no import reads it.
SHELL_OWN = frozenset({"_", "PWD", "OLDPWD", "SHLVL", "PS1", "COLUMNS", "LINES", "WINDOWID",
                       "TERM_SESSION_ID", "TMUX_PANE", "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY"})


def _imported_under(name: str) -> bool:
    """Whether an import may read the variable: all but labctl's own, the per-task ones and the
    shell's bookkeeping."""
    return not name.startswith("LABCTL_") and name not in PER_TASK and name not in SHELL_OWN


def runtime_dir(create: bool = True) -> Path:
    """The user's private directory for servers; OSError when it is not private (or, unless
    `create`, not there)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    root = Path(base, "labctl") if base else Path(tempfile.gettempdir(), f"labctl-{os.getuid()}")
    if create:
        with contextlib.suppress(FileExistsError):
            root.mkdir(mode=0o700)
    found = root.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise OSError(f"{root} is not a directory of yours closed to other users")
    servers = root / "preload"
    if create:
        servers.mkdir(mode=0o700, exist_ok=True)
    return servers


def _stamp(path: str | None) -> list[object]:
    try:
        found = os.stat(path) if path else None
    except OSError:
        found = None
    return [path, found.st_mtime_ns if found else None, found.st_size if found else None]


def _holds(entry: str) -> list[object]:
    """What an import can find in a PYTHONPATH entry: its names, with each file's size and time
    (a copy that keeps them, as shutil.copytree does, holds the same)."""
    try:
        with os.scandir(entry) as found:
            return sorted([e.name, "dir"] if e.is_dir() else [e.name, *_stamp(e.path)[1:]]
                          for e in found if e.name != "__pycache__")  # written by imports
    except OSError:  # a zip file, or nothing there
        return _stamp(entry)


def key(env: Mapping[str, str], modules: tuple[str, ...]) -> str:
    """What a server's imports depend on (module docstring), as a short hash. PYTHONPATH counts
    by what its directories hold, not by their paths: a copy of labs/ shares the server. The
    other sys.path directories count by their times: an install or uninstall changes them."""
    path = forkserver.python_path(os.getcwd(), env.get("PYTHONPATH", ""))
    found = []
    for name in modules:
        spec = PathFinder.find_spec(name.partition(".")[0], [*path, *sys.path[1:]])
        found.append(_stamp(spec.origin if spec else None)[1:])
    own = [_stamp(str(p)) for p in sorted(Path(__file__).parent.glob("*.py"))]
    imported = sorted((k, v) for k, v in env.items() if _imported_under(k) and k != "PYTHONPATH")
    # site-packages, the user's, the standard library (PYTHONPATH's count by what they hold)
    rest = [_stamp(p) for p in sys.path[1:] if p not in path]
    blob = json.dumps([sys.executable, modules, imported, [_holds(p) for p in path], found, own,
                       rest])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _servers(root: Path) -> tuple[list[tuple[int, str, tuple[str, ...]]], list[Path]]:
    """(pid, key, modules) of each running server, and the directories of stopped ones."""
    running, stopped = [], []
    for info in root.glob(f"*/{INFO}"):
        try:
            data = json.loads(info.read_text())
            # The process that wrote it, not a later one with its pid (or a task it forked).
            alive = psutil.Process(data["pid"]).create_time() == data["started"]
        except (OSError, ValueError, KeyError, psutil.Error):
            alive = False
        if alive:
            running.append((data["pid"], data["key"], tuple(data["modules"])))
        else:
            stopped.append(info.parent)
    return running, stopped


def stop_all() -> list[int]:
    """Tell every server of the user to stop (each lets its running sessions end first) and
    remove what killed ones left; returns the pids told."""
    try:
        root = runtime_dir(create=False)
    except OSError:  # none there, or not private: labctl never started a server in it
        return []
    running, stopped = _servers(root)
    for old in stopped:
        shutil.rmtree(old, ignore_errors=True)
    return [pid for pid, _key, _modules in running if _stop(pid)]


def _stop(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def _spawn(key: Path, env: Mapping[str, str], modules: tuple[str, ...]) -> None:
    """Start a server for `key` and wait until it listens (it imports after that)."""
    for pid, other, mods in _servers(key.parent)[0]:
        if other != key.name and mods == modules:  # one server per lab kind and user
            _stop(pid)
    own = Path(tempfile.mkdtemp(prefix=f"{key.name}.", dir=key.parent))
    (own / "marks").mkdir()
    with forkserver.key_file(key, "log").open("a") as log:  # a losing server may write it too
        subprocess.run(  # -P: no module of the working directory may shadow a real one
            [sys.executable, "-P", "-m", "labctl.forkserver", str(key), str(IDLE_S), *modules],
            env={**env, PRELOAD_DIR_ENV: str(own / "marks")},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            start_new_session=True, check=False, timeout=CONNECT_TIMEOUT_S,
        )


def _connect(key: Path, env: Mapping[str, str], modules: tuple[str, ...]) -> socket.socket:
    """A connection to the server for `key`, started when there is none."""
    spawned = False
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.settimeout(CONNECT_TIMEOUT_S)  # a full backlog would block connect() for good
        try:
            sock.connect(str(forkserver.key_file(key, "sock")))
            sock.settimeout(None)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
        except OSError:
            sock.close()
            raise
        if spawned and not _held(forkserver.key_file(key, "lock")):  # it failed to start
            raise OSError(_last_line(forkserver.key_file(key, "log")) or "it exited")
        if time.monotonic() > deadline:
            raise OSError(f"no server listens on {forkserver.key_file(key, 'sock')}")
        if not spawned:
            _spawn(key, env, modules)
            spawned = True
        else:  # a server (ours, or another labctl's) has the lock and is about to listen
            time.sleep(CONNECT_POLL_S)


def _held(lock: Path) -> bool:
    """Whether a server holds the lock (it does while it listens)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class Server:
    """A session of the user's server, for every local run of this labctl process."""

    def __init__(self, env: Mapping[str, str], modules: tuple[str, ...]) -> None:
        # What each task brings itself is no part of it.
        self.env = {k: v for k, v in env.items() if k not in PER_TASK}
        self.cond = threading.Condition()
        self.ready = False
        self.gone = False
        self.pid = self.server_pid = 0  # the session's, the server's
        # Keyed by token, not pid: a pid may come back for a later task of a long `run all`.
        self.pids: dict[int, int | str] = {}  # token -> pid, or why the fork failed
        self.exits: dict[int, int] = {}  # token -> exit code
        self.threads_at_fork: list[int] = []
        self.tokens = 0
        self.failure = ""
        try:
            self.key = runtime_dir() / key(self.env, modules)
            self.sock = _connect(self.key, self.env, modules)
        except (OSError, subprocess.SubprocessError) as err:
            self.failure, self.gone = str(err), True
            return
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        while True:
            try:
                msg = self.sock.recv(MAX_MESSAGE)
            except OSError:
                msg = b""
            with self.cond:
                if not msg:  # the session ended: so did its tasks (PR_SET_PDEATHSIG)
                    self.gone = True
                    for token in self.pids:
                        self.exits.setdefault(token, -signal.SIGKILL)
                    self.cond.notify_all()
                    return
                reply = json.loads(msg)
                if reply.get("ready"):
                    self.ready, self.pid, self.server_pid = True, reply["pid"], reply["server"]
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
            last = self.failure or _last_line(forkserver.key_file(self.key, "log"))
            return "the pre-imported interpreter failed" + (f" ({last})" if last else "")
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
                self.cond.wait_for(lambda: token in self.pids or self.gone, FORK_TIMEOUT_S)
                pid = self.pids.get(token, "no answer")
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

    def close(self, timeout: float = 5.0) -> None:
        """End the session: it kills what is left of its tasks, reaps them and closes, which
        this waits for (so nothing of the run is alive when labctl exits)."""
        if self.failure:
            return
        if not self.ready:  # still importing: nothing was forked, nothing to wait for
            timeout = 0.0
        # shutdown, not just close: the listener's blocked recv holds a reference to the socket.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        with self.cond:
            self.cond.wait_for(lambda: self.gone, timeout)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _last_line(log: Path) -> str:
    try:
        return (log.read_text(errors="replace").strip().splitlines() or [""])[-1]
    except OSError:
        return ""


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


_sessions: dict[tuple[str, ...], Server] = {}


def server(env: Mapping[str, str], modules: tuple[str, ...]) -> Server:
    """This labctl's session for `modules`, opened on first use and closed when labctl exits."""
    found = _sessions.get(modules)
    if found is None or found.gone:
        found = _sessions[modules] = Server(env, modules)
        atexit.register(found.close)
    return found
