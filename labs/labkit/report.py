"""How a lab program reports: PROGRESS lines on stdout and JSON files under --output-dir.

The formats are the launcher contract in labs/README.md. No TensorFlow here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

START = time.monotonic()  # the task's start: labkit is imported before TensorFlow


def time_since_start() -> float:
    return time.monotonic() - START


def exit_now(code: int = 0) -> NoReturn:
    """End the task once its files are written and closed: TensorFlow's interpreter teardown
    takes about 2 s per process and does nothing a finished task needs."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a check or a restarted task never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


class Progress:
    """Rate-limited `PROGRESS step=... loss=... accuracy=...` lines, and the timings they imply.

    `accuracy` is test accuracy; each value is kept with its time so that a benchmark can tell
    how long a run took to reach a target accuracy.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.first_step_at: float | None = None
        self.last_print = 0.0
        self.step = 0
        self.accuracy: float | None = None  # the latest test accuracy, repeated on each line
        self.history: list[tuple[float, int, float]] = []  # (seconds since start, step, accuracy)

    def update(self, step: int, loss: float | None = None, accuracy: float | None = None,
               *, force: bool = False) -> None:
        now = time.monotonic()
        if self.first_step_at is None:
            self.first_step_at = now
        self.step = step
        if accuracy is not None:
            self.accuracy = float(accuracy)
            self.history.append((round(now - START, 3), step, round(self.accuracy, 4)))
        if force or now - self.last_print >= self.interval_s:
            self.last_print = now
            fields = [f"step={step}"]
            if loss is not None:
                fields.append(f"loss={float(loss):.4f}")
            if self.accuracy is not None:
                fields.append(f"accuracy={self.accuracy:.4f}")
            print("PROGRESS", *fields, flush=True)

    def timings(self, steps: int | None = None) -> dict[str, float]:
        """wall_time_s, startup_s and steps_per_sec (over `steps`, the global step by default)."""
        now = time.monotonic()
        first = self.first_step_at or now
        steps = self.step if steps is None else steps
        return {
            "wall_time_s": round(now - START, 3),
            "startup_s": round(first - START, 3),
            "steps_per_sec": round(steps / max(now - first, 1e-9), 2),
        }


def cgroup_cpu(proc: str = "/proc", root: str = "/sys/fs/cgroup") -> dict[str, str] | None:
    """This process's cgroup v2 `cpu.max` and `cpu.stat`, the kernel's text, or None without
    cgroup v2 (macOS, a cgroup v1 host). /proc/self/cgroup's `0::PATH` line names the cgroup;
    in a container, with its own cgroup namespace, PATH is `/`: the container's cgroup."""
    try:
        lines = Path(proc, "self", "cgroup").read_text().splitlines()
        path = next(line[3:] for line in lines if line.startswith("0::"))
        where = Path(root, path.lstrip("/"))
        return {name: (where / name).read_text() for name in ("cpu.max", "cpu.stat")}
    except (OSError, StopIteration):
        return None


def write_task(output_dir: Path, stem: str, progress: Progress, local_steps: int,
               **extra: Any) -> None:
    """tasks/<type>-<index>.json: what one training task did. With cgroup v2, also its
    cgroup's CPU limit and counters as the kernel kept them (`cgroup`): the cgroup is removed
    with the container, so this copy is what is left of them once the task has ended."""
    cgroup = cgroup_cpu()
    write_json(output_dir / "tasks" / f"{stem}.json",
               {"task": stem, "local_steps": local_steps, **progress.timings(local_steps),
                **({"cgroup": cgroup} if cgroup else {}), **extra})


def write_results(output_dir: Path, lab: str, progress: Progress, **fields: Any) -> None:
    """results.json, written by the task whose exit decides the run's success."""
    write_json(output_dir / "results.json", {
        "lab": lab,
        **progress.timings(),
        "global_step": progress.step,
        "accuracy_history": progress.history,
        **fields,
    })
