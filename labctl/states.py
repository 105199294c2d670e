"""The words labctl's records and verdicts are made of, one StrEnum each.

StrEnum members are strings: they compare equal to the words in run.json, check.json and
lab.toml, and are written there as those words.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run's `status` in run.json."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM
    SKIPPED = "skipped"  # a cluster target without the hardware (lab 10 without a GPU)


class TaskStatus(StrEnum):
    """One task's `status` in run.json's `tasks`."""

    PENDING = "pending"
    RUNNING = "running"
    BACKOFF = "backoff"  # waiting to be restarted
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"  # ended by the launcher, or never started


class Shutdown(StrEnum):
    """How a lab's tasks end (lab.toml `shutdown`)."""

    LAUNCHER = "launcher"  # the launcher stops the rest once the success task is done
    DONE_QUEUE = "done-queue"  # every task ends by itself


class LabKind(StrEnum):
    """lab.toml `kind`."""

    LOCAL = "local"  # runs on any target
    CLUSTER = "cluster"  # needs Kubernetes (--target k8s)


class Target(StrEnum):
    """Where a run's tasks run (`--target`)."""

    LOCAL = "local"
    DOCKER = "docker"
    K8S = "k8s"


class Word(StrEnum):
    """A check's verdict."""

    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"
