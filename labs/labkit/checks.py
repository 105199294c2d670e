"""Helpers for check scripts: read a finished run, judge it, print PASS or FAIL + hint.

No TensorFlow here: a check reads what the run wrote (JSON, and protobuf text for graphs and
traces, parsed by the small reader below) and runs in a fraction of a second.
Usage: `python labs/NN-name/check.py RUN_DIR`; exit 0 PASS, 1 FAIL, 2 RUN_DIR unusable.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

MIN_ACCURACY = 0.95


class Failed(Exception):
    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.reason, self.hint = reason, hint


def require(condition: object, reason: str, hint: str) -> None:
    if not condition:
        raise Failed(reason, hint)


class Run:
    """A run directory as labctl leaves it: run.json, logs/, output/."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.output = path / "output"
        self.meta: dict[str, Any] = json.loads((path / "run.json").read_text())
        self.lab = str(self.meta.get("lab", path.parent.name))

    def json(self, relative: str) -> dict[str, Any]:
        file = self.output / relative
        require(file.is_file(), f"{relative} is missing from the run's output",
                f"the run did not finish its work: read `labctl logs {self.lab}`")
        return json.loads(file.read_text())

    def text(self, relative: str) -> str:
        file = self.output / relative
        require(file.is_file(), f"{relative} is missing from the run's output",
                f"the run did not finish its work: read `labctl logs {self.lab}`")
        return file.read_text()

    def results(self) -> dict[str, Any]:
        return self.json("results.json")

    def tasks(self, job: str) -> dict[str, dict[str, Any]]:
        """tasks/<job>-<i>.json files by stem, e.g. {"worker-0": {...}}."""
        files = sorted((self.output / "tasks").glob(f"{job}-*.json"))
        return {f.stem: json.loads(f.read_text()) for f in files}

    def task_count(self, job: str) -> int:
        """How many `job` tasks the launcher started (run.json), 0 when it does not say."""
        counts = self.meta.get("counts") or {}
        if job in counts:
            return int(counts[job])
        names = [t.get("name", "") for t in self.meta.get("tasks", []) if isinstance(t, dict)]
        return sum(1 for name in names if re.fullmatch(rf"{job}:\d+", name))

    def arg(self, name: str) -> Any:
        """An option the launcher passed to the program (run.json `args`), or None."""
        return (self.meta.get("args") or {}).get(name)


def check_accuracy(run: Run, results: dict[str, Any]) -> str:
    accuracy = float(results.get("test_accuracy", 0.0))
    require(accuracy >= MIN_ACCURACY,
            f"test accuracy {accuracy:.4f} is below {MIN_ACCURACY}",
            f"train longer (`labctl run {run.lab} --steps N` with a larger N) and check that "
            "every worker took part")
    return f"test accuracy {accuracy:.4f} >= {MIN_ACCURACY}"


def main(check) -> NoReturn:
    """Run `check(run) -> str` on the RUN_DIR given on the command line; print the verdict."""
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} RUN_DIR", file=sys.stderr)
        raise SystemExit(2)
    path = Path(sys.argv[1])
    if not (path / "run.json").is_file():
        print(f"error: {path} is not a run directory (no run.json): run the lab first",
              file=sys.stderr)
        raise SystemExit(2)
    try:
        verdict = check(Run(path))
    except Failed as failure:
        print(f"FAIL: {failure.reason}")
        print(f"hint: {failure.hint}")
        raise SystemExit(1) from None
    print(f"PASS: {verdict}")
    raise SystemExit(0)


# --- protobuf text format, enough for GraphDef and StepStats -------------------------------

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<punct>[{}:<>])|(?P<word>[^\s{}:<>"]+))')
Message = dict[str, list[Any]]


def parse_pbtxt(text: str) -> Message:
    """Parse protobuf text into {field: [values]}; nested messages become dicts, strings are
    unquoted (escapes left as they are), numbers and enums stay strings."""
    tokens: list[str] = []
    for match in _TOKEN.finditer(text):
        if match.group("str") is not None:
            tokens.append(match.group("str"))
        elif match.group("punct") is not None or match.group("word") is not None:
            tokens.append(match.group(0).strip())
    return _message(tokens, 0, closing=None)[0]


def _message(tokens: list[str], pos: int, closing: str | None) -> tuple[Message, int]:
    out: Message = {}
    while pos < len(tokens):
        name = tokens[pos]
        if name == closing:
            return out, pos + 1
        pos += 1
        if tokens[pos] == ":":
            pos += 1
        if tokens[pos] in "{<":
            value, pos = _message(tokens, pos + 1, "}" if tokens[pos] == "{" else ">")
        else:
            value, pos = tokens[pos], pos + 1
            if value.startswith('"'):
                value = value[1:-1]
        out.setdefault(name, []).append(value)
    return out, pos


def graph_nodes(graph_pbtxt: str) -> dict[str, dict[str, Any]]:
    """A GraphDef's nodes by name: op, device, inputs (control inputs without the ^)."""
    nodes = {}
    for node in parse_pbtxt(graph_pbtxt).get("node", []):
        inputs = [i.lstrip("^").split(":")[0] for i in node.get("input", [])]
        nodes[node["name"][0]] = {"op": node["op"][0], "device": node.get("device", [""])[0],
                                  "inputs": inputs}
    return nodes


def ancestors(nodes: dict[str, dict[str, Any]], name: str) -> set[str]:
    """Every node `name` depends on, following the GraphDef's recorded edges."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for parent in nodes[todo.pop()]["inputs"]:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def executed_on(step_stats_pbtxt: str) -> dict[str, set[str]]:
    """From RunMetadata step_stats: node name -> the devices that really executed it."""
    ran: dict[str, set[str]] = {}
    for dev in parse_pbtxt(step_stats_pbtxt).get("dev_stats", []):
        device = dev["device"][0]
        for node in dev.get("node_stats", []):
            ran.setdefault(node["node_name"][0], set()).add(device)
    return ran


def task_of(device: str) -> str:
    """'/job:worker/replica:0/task:1/device:CPU:0' -> 'worker:1' ('' when it names no task)."""
    match = re.search(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)", device)
    return f"{match.group(1)}:{match.group(2)}" if match else ""
