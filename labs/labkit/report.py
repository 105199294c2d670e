"""How a lab program reports: PROGRESS lines on stdout and JSON files under --output-dir.

The formats are the launcher contract in labs/README.md. No TensorFlow here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from importlib.abc import Loader
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

START = time.monotonic()  # the task's start: labkit is imported before TensorFlow


def _process_age() -> float | None:
    """Seconds from this process's start (its fork) to now, at labkit's import: the
    interpreter's own start. Linux only (/proc/self/stat's starttime, in clock ticks since
    boot, against CLOCK_BOOTTIME); None elsewhere."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22; fields[0] is field 3
        return round(max(time.clock_gettime(time.CLOCK_BOOTTIME) - started, 0.0), 3)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


PYTHON_S = _process_age()
# Seconds `import tensorflow` took in this process; 0.0 when it was imported before labkit (a
# task forked from labctl's pre-imported interpreter), None until it has been imported.
tf_import_s: float | None = 0.0 if "tensorflow" in sys.modules else None


class _TimedLoader(Loader):
    """Runs tensorflow's own loader and records how long the package's import took (its
    submodules are imported inside it); then steps aside, the module keeps the real loader."""

    def __init__(self, loader: Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        global tf_import_s
        began = time.monotonic()
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        try:
            self.loader.exec_module(module)
        finally:
            tf_import_s = round(time.monotonic() - began, 3)


class _ImportClock:
    """A meta-path finder for the one name `tensorflow`: finds it as Python would, with the
    clock around its loader. Removes itself at the first lookup."""

    def find_spec(self, name: str, path: Any = None, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _TimedLoader(spec.loader)
        return spec


if tf_import_s is None:
    sys.meta_path.insert(0, _ImportClock())


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

    def timings(self, steps: int | None = None) -> dict[str, float | None]:
        """wall_time_s, startup_s and steps_per_sec (over `steps`, the global step by default),
        and start-up's parts: python_s (process start to labkit's import: the interpreter),
        tf_import_s, and connect_s (the rest of startup_s: data, graph, server and the
        connection to the cluster, up to the first step)."""
        now = time.monotonic()
        first = self.first_step_at or now
        steps = self.step if steps is None else steps
        startup = round(first - START, 3)
        return {
            "wall_time_s": round(now - START, 3),
            "startup_s": startup,
            "steps_per_sec": round(steps / max(now - first, 1e-9), 2),
            "python_s": PYTHON_S,
            "tf_import_s": tf_import_s,
            "connect_s": None if tf_import_s is None else round(startup - tf_import_s, 3),
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
