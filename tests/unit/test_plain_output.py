"""What `labctl` writes to a real terminal (a pseudo-terminal): the live bar by default, and
with `--plain` or NO_COLOR one plain line per update, no colour, no carriage-return redraws."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from _labctl import LABCTL, labctl_env, leftovers

# CSI (colours, cursor moves, erase line) and the other ESC sequences a terminal UI may write
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
# lab 02-fake, small: one worker, no ps, 100 steps of 10 ms; long enough for a few redraws
RUN = ("run", "02", "--workers", "1", "--ps", "0", "--steps", "100")
# the variables that make rich or labctl change their mind about the terminal
TERMINAL_VARS = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS",
                 "LINES", "CLICOLOR_FORCE")


def on_a_terminal(state: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """labctl's stdout and stderr, byte for byte, when both are a 100x30 terminal."""
    full_env = labctl_env(state, TERM="xterm-256color")
    for name in TERMINAL_VARS:
        full_env.pop(name, None)
    full_env.update(env or {})
    master, slave = os.openpty()
    mode = termios.tcgetattr(slave)
    mode[1] &= ~termios.OPOST  # no "\n" -> "\r\n" by the terminal: every "\r" is labctl's own
    termios.tcsetattr(slave, termios.TCSANOW, mode)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen([*LABCTL, *args], env=full_env, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.5)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO (Linux): the last writer closed the terminal
                break
            if not chunk:  # EOF (macOS)
                break
            out += chunk
        else:
            proc.kill()
            pytest.fail(f"labctl {' '.join(args)} still writing after 60 s: {bytes(out)!r}")
    finally:
        os.close(master)
    assert proc.wait(timeout=10) == 0, bytes(out).decode(errors="replace")
    assert leftovers(state) == []
    return out.decode()


@pytest.mark.parametrize("env", [{}, {"NO_COLOR": ""}], ids=["default", "NO_COLOR-empty"])
def test_a_terminal_gets_the_live_bar(state: Path, env: dict[str, str]) -> None:
    """As before --plain existed; an empty NO_COLOR does not count (no-color.org)."""
    out = on_a_terminal(state, *RUN, env=env)
    assert "\r" in out, "the bar is redrawn in place"
    assert ANSI.search(out), "colour and cursor control"
    assert "━" in out and "100/100" in out  # rich's bar, full at the end
    assert "progress: " not in out  # not the plain line


@pytest.mark.parametrize(("args", "env"), [
    (("--plain", *RUN), {}),
    ((*RUN, "--plain"), {}),
    (RUN, {"NO_COLOR": "1"}),
], ids=["--plain-first", "--plain-after", "NO_COLOR=1"])
def test_plain_is_lines_without_redraws_or_escapes(state: Path, args: tuple[str, ...],
                                                   env: dict[str, str]) -> None:
    out = on_a_terminal(state, *args, env=env)
    assert "\r" not in out
    assert not ANSI.search(out), ANSI.findall(out)
    # the pipe/CI display: prefixed task lines and a progress line, the last at the final step
    assert "worker:0 | worker:0 starting" in out
    progress = [line for line in out.splitlines() if line.startswith("progress: ")]
    assert progress and progress[-1].startswith("progress: 02-fake: step 100/100 ")
    assert "succeeded in" in out


@pytest.mark.parametrize(("args", "env", "styled"), [
    (("list",), {}, True),
    (("--plain", "list"), {}, False),
    (("list",), {"NO_COLOR": "1"}, False),
], ids=["default", "--plain", "NO_COLOR=1"])
def test_list_on_a_terminal(state: Path, args: tuple[str, ...], env: dict[str, str],
                            styled: bool) -> None:
    out = on_a_terminal(state, *args, env=env)
    assert "02-fake" in out and "\r" not in out
    assert bool(ANSI.search(out)) is styled
