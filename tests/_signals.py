"""Start a process that must take Ctrl-C (SIGINT) the way it would from a terminal."""

from __future__ import annotations

import signal


def sigint_as_from_a_terminal() -> None:
    """A Popen preexec_fn: SIGINT back to its default action. A job a non-interactive shell puts
    in the background (`make test &`, some CI runners) starts with SIGINT ignored, and Python
    keeps it ignored: the process under test would never see the test's SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
