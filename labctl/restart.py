"""Restart policy OnFailure with exponential back-off, as pure logic (Kubernetes Job semantics)."""

from __future__ import annotations

import signal
from dataclasses import dataclass

# A configuration error that a restart cannot fix (the lab contract; a podFailurePolicy rule).
EXIT_CONFIG_ERROR = 2


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 3
    base_delay_s: float = 1.0
    max_delay_s: float = 16.0

    def delay(self, restarts_done: int) -> float:
        """Back-off before restart number `restarts_done + 1`: 1 s, 2 s, 4 s, ... capped."""
        return min(self.base_delay_s * 2**restarts_done, self.max_delay_s)


@dataclass(frozen=True)
class Decision:
    restart: bool
    delay_s: float
    reason: str


def decide(policy: RestartPolicy, exit_code: int, restarts_done: int) -> Decision:
    """What to do with a task that exited with `exit_code` (negative: killed by that signal)."""
    if exit_code == 0:
        return Decision(False, 0.0, "completed")
    if exit_code == EXIT_CONFIG_ERROR:
        return Decision(False, 0.0, "configuration error (exit 2): not restarted")
    if restarts_done >= policy.max_restarts:
        return Decision(False, 0.0, f"restart limit {policy.max_restarts} reached")
    return Decision(True, policy.delay(restarts_done), f"restart {restarts_done + 1}")


def describe_exit(exit_code: int) -> str:
    """`exit 1`, or `killed by SIGKILL` for a negative Popen return code."""
    if exit_code < 0:
        try:
            return f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"killed by signal {-exit_code}"
    return f"exit {exit_code}"
