"""`python -m labctl.shim FD -- PROGRAM ARGS...`: run one task and make it die with labctl.

The portable stand-in for Linux's PR_SET_PDEATHSIG (macOS has none). labctl holds the only write
end of a pipe; the shim inherits the read end as FD. When labctl exits, however it dies (even
SIGKILL), the kernel closes that end, the read returns EOF, and the shim kills its process
group: the program and whatever it started. Otherwise the shim is invisible: the program gets
the shim's stdio, and the shim exits as the program did (same code, same signal).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading


def _watch(fd: int) -> None:
    while os.read(fd, 1):  # labctl never writes; EOF means it is gone
        pass
    os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print("usage: python -m labctl.shim FD -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    fd = int(argv[0])
    # Signals to the group reach the program directly; the shim waits to report its exit.
    # A handler (not SIG_IGN, which exec would pass on) keeps the shim alive until then.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)
    child = subprocess.Popen(argv[2:])
    threading.Thread(target=_watch, args=(fd,), daemon=True).start()
    code = child.wait()
    if code < 0:  # mirror a death by signal (SIGKILL's disposition cannot be set, or need be)
        with contextlib.suppress(OSError, ValueError):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
