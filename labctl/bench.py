"""`python -m labctl.bench` (`make bench`): labs 04-07 with 1 and 2 workers, against a
single-process baseline that trains the same model for the same steps. Each distributed run is
made three times on Linux, so that the start-up columns compare them: with tasks forked from a
pre-imported interpreter that this run starts (`cold`: the user's servers are stopped first,
as on the first run of the day), forked from the one already up (the next run, the default),
and as plain processes (`--no-preload`). See labctl.preload.

Each lab runs through `labctl run LAB --workers N` in a state directory of its own (the
attendee's runs stay untouched); the numbers come from the run's results.json (the success
task's timings, its start-up split into the interpreter's start, `import tensorflow` and the
rest up to the first step (labkit.report), and its test-accuracy history) and run.json (the
launcher's wall time). The baseline
is labs/labkit/baseline.py. Prints a table, writes bench.json and bench.png under
.labctl/bench/. Like the rest of labctl, it never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labctl import labs, memory, preload, procs, record
from labctl.errors import UsageError
from labctl.local import forking
from labctl.states import RunStatus

TARGET = 0.95
DEFAULT_LABS = "04,05,06,07"
COLUMNS = ("run", "status", "steps", "wall_s", "first_step_s", "task_start_s", "startup_s",
           "python_s", "tf_import_s", "connect_s", "steps_per_s", "vs_baseline", "to_0.95_s",
           "accuracy", "task_mib", "run_mib")
START_MODES = ("cold", "forked", "plain")


@dataclass
class Row:
    lab: str
    workers: int  # 0: the single-process baseline
    status: str
    start: str = "plain"  # one of START_MODES
    steps: int | None = None
    wall_s: float | None = None  # launcher start to end (the baseline: process start to end)
    first_step_s: float | None = None  # launcher start to the success task's first step
    task_start_s: float | None = None  # launcher start to the success task's start (cold: the
    # pre-imported interpreter's import; forked: a fork; plain: a fork and exec)
    startup_s: float | None = None  # success task start to its first training step (plain:
    # Python and TensorFlow imports and the cluster connection; forked: the connection only)
    python_s: float | None = None  # the success task's process start to labkit's import
    tf_import_s: float | None = None  # its `import tensorflow` (forked: 0, done by the server)
    connect_s: float | None = None  # startup_s after the import: data, graph, server, cluster
    vs_baseline: float | None = None  # steps_per_s over the baseline's
    steps_per_sec: float | None = None  # global steps per second after the first step
    time_to_target_s: float | None = None  # launcher start to the first test accuracy >= 0.95
    test_accuracy: float | None = None
    task_mib: float | None = None  # the largest task's peak memory (labctl.memory: PSS)
    run_mib: float | None = None  # the run's peak, every process at once (forked: the server too)

    @property
    def name(self) -> str:
        if self.workers == 0:
            return f"{self.lab} baseline"
        return f"{self.lab} {self.workers}w" + ("" if self.start == "forked" else f" {self.start}")


def time_to(history: list[list[float]], target: float) -> float | None:
    """Seconds from task start to the first evaluation at or above `target`."""
    return next((t for t, _step, accuracy in history if accuracy >= target), None)


def from_results(row: Row, results: dict[str, Any]) -> Row:
    row.steps = results.get("global_step")
    row.startup_s = results.get("startup_s")
    row.python_s = results.get("python_s")
    row.tf_import_s = results.get("tf_import_s")
    row.connect_s = results.get("connect_s")
    row.steps_per_sec = results.get("steps_per_sec")
    row.time_to_target_s = time_to(results.get("accuracy_history", []), TARGET)
    row.test_accuracy = results.get("test_accuracy")
    return row


def run_lab(lab: labs.Lab, workers: int, start: str, state: Path) -> Row:
    env = {**os.environ, "LABCTL_STATE_DIR": str(state)}
    plain = ["--no-preload"] if start == "plain" else []
    if start == "cold":
        for pid in preload.stop_all():  # each stops at once: none has a session
            while procs.running(pid):
                time.sleep(0.05)
    proc = subprocess.run([sys.executable, "-m", "labctl", "run", lab.name, "--workers",
                           str(workers), "--quiet", *plain], env=env, capture_output=True,
                          text=True, check=False)
    run = state / "runs" / lab.name / "latest"
    rec = record.load(run / record.FILE)
    row = Row(lab.name[:2], workers, (rec and rec.status) or RunStatus.FAILED, start,
              wall_s=rec and rec.wall_time_s)
    peaks = (rec and rec.memory) or {}
    tasks = [mib for name, mib in peaks.get("tasks", {}).items() if name != memory.INTERPRETER]
    row.task_mib, row.run_mib = max(tasks, default=None), peaks.get("peak_mib")
    if proc.returncode != 0:
        print(f"bench: {row.name} failed: {(proc.stderr.strip().splitlines() or ['?'])[0]}",
              file=sys.stderr)
    results = run / "output" / "results.json"
    if not results.is_file():
        return row
    row = from_results(row, json.loads(results.read_text()))
    success = next((t for t in (rec.tasks if rec else []) if t["name"] == rec.success), {})
    row.task_start_s = success.get("started_s")
    if row.task_start_s is not None and row.startup_s is not None:
        row.first_step_s = round(row.task_start_s + row.startup_s, 2)
    if row.task_start_s is not None and row.time_to_target_s is not None:
        row.time_to_target_s = round(row.task_start_s + row.time_to_target_s, 2)  # as wall_s
    return row


def run_baseline(lab: labs.Lab, out: Path) -> Row:
    env = {**os.environ, "PYTHONPATH": str(labs.labs_dir())}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "labkit.baseline", "--output-dir", str(out),
                             "--steps", str(lab.args["steps"])], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sampler = memory.Sampler(lambda: {"baseline": [proc.pid]})
    proc.wait()
    peak = sampler.stop()["peak_mib"]
    row = Row(lab.name[:2], 0, RunStatus.SUCCEEDED if proc.returncode == 0 else RunStatus.FAILED,
              wall_s=round(time.monotonic() - started, 2), task_mib=peak, run_mib=peak)
    return from_results(row, json.loads((out / "results.json").read_text())) if (
        proc.returncode == 0) else row


def table(rows: list[Row]) -> str:
    def cell(value: float | int | str | None) -> str:
        if value is None:
            return "-"
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = [[r.name, r.status, cell(r.steps), cell(r.wall_s), cell(r.first_step_s),
              cell(r.task_start_s), cell(r.startup_s), cell(r.python_s), cell(r.tf_import_s),
              cell(r.connect_s), cell(r.steps_per_sec),
              cell(r.vs_baseline), cell(r.time_to_target_s),
              "-" if r.test_accuracy is None else f"{r.test_accuracy:.4f}",
              cell(r.task_mib), cell(r.run_mib)] for r in rows]
    widths = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(COLUMNS)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))
                     for line in [list(COLUMNS), *lines])


def chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    names = [r.name for r in rows][::-1]
    rows = rows[::-1]
    fig, (times, speed, held) = plt.subplots(1, 3, figsize=(15, 0.45 * len(rows) + 1.5),
                                             sharey=True)
    # One bar per run, its parts end to end: launcher to task start, the task's start-up split
    # (labkit's import, then TensorFlow's, then the rest up to the first step), training.
    parts = [("to the task's start (cold: the server's import)", "#e8e8e8",
              [r.task_start_s or 0 for r in rows]),
             ("Python start", "#d0d0d0", [r.python_s or 0 for r in rows]),
             ("import tensorflow", "#a0a0a0", [r.tf_import_s or 0 for r in rows]),
             ("data, graph, cluster connection", "#707070",
              [(r.connect_s if r.connect_s is not None else r.startup_s) or 0 for r in rows])]
    left = [0.0] * len(rows)
    for label, color, widths in parts:
        times.barh(names, widths, left=left, color=color, label=label)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    times.barh(names, [max((r.wall_s or 0) - a, 0) for r, a in zip(rows, left, strict=True)],
               left=left, color="#4c72b0", label="training and shutdown")
    reached = [(r.time_to_target_s, n) for r, n in zip(rows, names, strict=True)
               if r.time_to_target_s is not None]
    times.scatter([t for t, _ in reached], [n for _, n in reached], marker="|", s=200,
                  color="#dd4444", zorder=3, label=f"test accuracy {TARGET} reached")
    times.set_xlabel("seconds")
    times.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, fontsize=8)
    speed.barh(names, [r.steps_per_sec or 0 for r in rows], color="#55a868")
    speed.set_xlabel("global steps per second")
    held.barh(names, [r.run_mib or 0 for r in rows], color="#c8c8e8", label="whole run")
    held.barh(names, [r.task_mib or 0 for r in rows], color="#8172b2", height=0.4,
              label="largest task")
    held.set_xlabel("peak memory, MiB (PSS)")
    held.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"labs vs single-process baseline ({os.cpu_count()} cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")  # the legend below the bars
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labctl.bench", description=__doc__)
    parser.add_argument("--labs", default=DEFAULT_LABS, help="comma-separated lab numbers")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--out", type=Path, default=labs.state_dir() / "bench")
    args = parser.parse_args(argv)
    try:
        chosen = [labs.load_lab(labs.resolve(n)) for n in args.labs.split(",")]
        counts = [int(n) for n in args.workers.split(",")]
    except (UsageError, ValueError) as err:
        parser.error(str(err))
    state = args.out / "state"
    shutil.rmtree(state, ignore_errors=True)
    load = os.getloadavg()[0]
    rows: list[Row] = []
    modes = START_MODES if forking() and any(lab.preload for lab in chosen) else ("plain",)
    for lab in chosen:
        print(f"bench: {lab.name} baseline, {lab.args['steps']} steps in one process ...",
              flush=True)
        baseline = run_baseline(lab, state / "baseline" / lab.name)
        for workers in counts:
            for start in modes:
                print(f"bench: {lab.name} with {workers} worker(s), {start} ...", flush=True)
                row = run_lab(lab, workers, start, state)
                if row.steps_per_sec and baseline.steps_per_sec:
                    row.vs_baseline = round(row.steps_per_sec / baseline.steps_per_sec, 2)
                rows.append(row)
        rows.append(baseline)
    print(table(rows))
    report = {"target_accuracy": TARGET, "cpus": os.cpu_count(), "load_before": round(load, 2),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "rows": [{"run": r.name, **asdict(r)} for r in rows]}
    (args.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    chart(rows, args.out / "bench.png")
    print(f"bench: wrote {args.out / 'bench.json'} and {args.out / 'bench.png'}")
    return 0 if all(r.status == RunStatus.SUCCEEDED for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
