"""Helpers for check scripts: read a finished run, judge it, print PASS, FAIL + hint, or SKIP.

The rule every check follows: the verdict rests on what only a real run leaves behind, read
and judged here (checkpoints, whose weights are evaluated again on the held-out data; saved
graphs; traces of where ops ran; one file per task), never on a number the program printed
about itself. A run that did not succeed is refused before anything else is read.
No TensorFlow here: checkpoints are read by labkit.checkpoint and protobuf text by the small
reader below, so a check runs in a fraction of a second.
Usage: `python labs/NN-name/check.py RUN_DIR`; exit 0 PASS, 1 FAIL, 2 RUN_DIR unusable,
3 SKIP (the run was skipped: nothing to judge, and nothing passed).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from labkit import checkpoint, data

MIN_ACCURACY = 0.95
EXIT_SKIP = 3
RECORD_VERSION = 1  # of run.json, whose fields labctl/record.py defines (RunRecord)


class Failed(Exception):
    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.reason, self.hint = reason, hint


class Skipped(Exception):
    """The run was skipped (lab 10 without a GPU): a verdict of its own, never PASS."""


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

    def checkpoint(self, relative: str) -> checkpoint.Checkpoint:
        """The latest checkpoint in output/<relative>/ (a directory with a `checkpoint` state
        file), or the one whose prefix is output/<relative>."""
        where = self.output / relative
        prefix = where if Path(f"{where}.index").is_file() else checkpoint.latest(where)
        require(prefix is not None, f"no checkpoint in {relative}/",
                f"the run saved no checkpoint: read `labctl logs {self.lab}`")
        return checkpoint.Checkpoint(prefix)

    def require_finished(self, hint: str | None = None) -> None:
        """Refuse a run that is not over and successful; a skipped run is SKIP."""
        status = self.meta.get("status")
        if status == "skipped":
            raise Skipped(str(self.meta.get("reason") or "the run was skipped"))
        reason = self.meta.get("reason")
        require(status == "succeeded",
                f"the run has not finished (status {status})" if status == "running" else
                f"the run {status}" + (f": {reason}" if reason else ""),
                hint or f"nothing to judge in a run that did not succeed: read `labctl logs "
                f"{self.lab}`, fix the cause and run the lab again")


def variable_key(ckpt: checkpoint.Checkpoint, name: str) -> str | None:
    """A variable's key in the checkpoint: TF1 saves it by name, TF2 by its object path."""
    return next((key for key in (name, f"{name}/.ATTRIBUTES/VARIABLE_VALUE")
                 if key in ckpt.entries), None)


def step_of(ckpt: checkpoint.Checkpoint, name: str = "global_step") -> int:
    """A step counter saved in the checkpoint (TF1 name, or its TF2 object path)."""
    key = variable_key(ckpt, name)
    if key is not None:
        return int(ckpt.tensor(key))
    raise Failed(f"the checkpoint {ckpt.prefix.name} holds no {name}",
                 "save the step counter with the model (the lab's program does)")


def mlp_weights(ckpt: checkpoint.Checkpoint) -> dict[str, np.ndarray]:
    """w1, b1, w2, b2 as the TF1 labs name them, as TF2 labs save them (labkit.model), or as
    the served model's tf.Module does (labkit.serving)."""
    weights = {}
    for name in ("w1", "b1", "w2", "b2"):
        key = variable_key(ckpt, name) or variable_key(ckpt, f"weights/{name}")
        require(key, f"the checkpoint {ckpt.prefix.name} holds no weight {name}",
                "keep the model of labkit.model: the check evaluates its four weights")
        weights[name] = ckpt.tensor(key).astype(np.float32)
    return weights


def test_accuracy(run: Run, weights: dict[str, np.ndarray]) -> float:
    """The trained MLP's accuracy on the run's held-out data, computed here with numpy."""
    ds = data.load(str(run.arg("dataset") or "digits"))
    w1, b1, w2, b2 = (weights[k] for k in ("w1", "b1", "w2", "b2"))
    require(w1.shape == (ds.features, w2.shape[0]) and b2.shape == (10,),
            f"the weights' shapes {list(w1.shape)} / {list(b2.shape)} do not fit "
            f"{ds.features} features and 10 classes", "keep the model of labkit.model")
    logits = np.maximum(ds.x_test @ w1 + b1, 0.0) @ w2 + b2
    return float(np.mean(np.argmax(logits, axis=1) == ds.y_test))


def check_accuracy(run: Run, ckpt: checkpoint.Checkpoint) -> str:
    """Evaluate the checkpoint's weights on the held-out data; at least MIN_ACCURACY."""
    accuracy = test_accuracy(run, mlp_weights(ckpt))
    where = ckpt.prefix.relative_to(run.output) if ckpt.prefix.is_relative_to(run.output) \
        else ckpt.prefix.name
    require(accuracy >= MIN_ACCURACY,
            f"the trained weights ({where}) reach a test accuracy of {accuracy:.4f}, "
            f"below {MIN_ACCURACY}",
            f"train longer (`labctl run {run.lab[:2]} --steps N` with a larger N) and check "
            "that every worker took part")
    return f"test accuracy {accuracy:.4f} >= {MIN_ACCURACY} (weights in {where})"


def check_participation(run: Run) -> dict[str, int]:
    """tasks/worker-<i>.json for every worker of the run, each with local steps."""
    workers = run.task_count("worker")
    local = {stem: int(t.get("local_steps", 0)) for stem, t in run.tasks("worker").items()}
    idle = [f"worker-{i}" for i in range(workers) if not local.get(f"worker-{i}")]
    require(not idle, f"no training steps from {', '.join(idle)} (of {workers} workers)",
            f"every worker must train and write tasks/worker-N.json: `labctl logs {run.lab[:2]} "
            "--task worker:N`")
    return local


def check_steps(run: Run, ckpt: checkpoint.Checkpoint, name: str = "global_step") -> int:
    """The checkpoint's step counter reached the --steps the run was given."""
    steps, wanted = step_of(ckpt, name), int(run.arg("steps") or 0)
    require(steps >= wanted, f"the last checkpoint ({ckpt.prefix.name}) is at step {steps}, the "
            f"run asked for {wanted}", "train until --steps and save a checkpoint at the end "
            "(the chief does)")
    return steps


def main(check, failed_hint: str | None = None) -> NoReturn:
    """Run `check(run) -> str` on the RUN_DIR given on the command line; print the verdict.
    A run that did not succeed is refused first (FAIL, with `failed_hint` when given)."""
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} RUN_DIR", file=sys.stderr)
        raise SystemExit(2)
    path = Path(sys.argv[1])
    if not (path / "run.json").is_file():
        print(f"error: {path} is not a run directory (no run.json): run the lab first",
              file=sys.stderr)
        raise SystemExit(2)
    run = Run(path)
    if int(run.meta.get("version", RECORD_VERSION)) > RECORD_VERSION:
        print(f"error: {path}/run.json was written by a newer labctl (record version "
              f"{run.meta['version']}): update this checkout's labs", file=sys.stderr)
        raise SystemExit(2)
    try:
        run.require_finished(failed_hint)
        verdict = check(run)
    except Skipped as skipped:
        print(f"SKIP: {skipped}")
        raise SystemExit(EXIT_SKIP) from None
    except checkpoint.CheckpointError as err:
        failure = Failed(f"cannot read the checkpoint: {err}", "TensorFlow writes it during the "
                         "run: run the lab again, and leave its output as it is")
    except Failed as caught:
        failure = caught
    else:
        print(f"PASS: {verdict}")
        raise SystemExit(0)
    print(f"FAIL: {failure.reason}")
    print(f"hint: {failure.hint}")
    raise SystemExit(1)


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
    """A GraphDef's nodes by name: op, device, inputs (control inputs without the ^), data
    (the data inputs alone) and value (an integer Const's value, else None)."""
    nodes = {}
    for node in parse_pbtxt(graph_pbtxt).get("node", []):
        names = node.get("input", [])
        nodes[node["name"][0]] = {
            "op": node["op"][0], "device": node.get("device", [""])[0],
            "inputs": [i.lstrip("^").split(":")[0] for i in names],
            "data": [i.split(":")[0] for i in names if not i.startswith("^")],
            "value": _int_value(node)}
    return nodes


def _int_value(node: Message) -> int | None:
    for attr in node.get("attr", []):
        if attr["key"][0] == "value":
            tensor = attr["value"][0].get("tensor", [{}])[0]
            ints = tensor.get("int_val") or tensor.get("int64_val")
            return int(ints[0]) if ints else None
    return None


ARITHMETIC = {"AddV2": lambda x, y: x + y, "Add": lambda x, y: x + y, "Mul": lambda x, y: x * y}


def evaluate(nodes: dict[str, dict[str, Any]], name: str, feeds: dict[str, int]) -> int:
    """What TensorFlow computes for the integer node `name` of a saved graph: constants,
    placeholders fed from `feeds`, variables at the value their initializer assigns, + and *."""
    node = nodes.get(name)
    require(node, f"the graph has no node {name!r}", "name= each op as in the README")
    op, args = node["op"], node["data"]
    if op == "Const" and node["value"] is not None:
        return node["value"]
    if op == "Placeholder" and name in feeds:
        return feeds[name]
    if op in ("Identity", "ReadVariableOp") and args:
        if op == "ReadVariableOp":  # a variable's value: what its AssignVariableOp writes
            assign = [n for n in nodes.values() if n["op"] == "AssignVariableOp"
                      and n["data"][:1] == args]
            require(assign, f"variable {args[0]} is never assigned", "give it an initial value")
            args = assign[0]["data"][1:]
        return evaluate(nodes, args[0], feeds)
    require(op in ARITHMETIC and len(args) == 2, f"{name} is a {op} node, which this lab's "
            "graph does not use", "build the graph from constants (or variables), tf.add "
            "and tf.multiply as in the README")
    return ARITHMETIC[op](*(evaluate(nodes, arg, feeds) for arg in args))


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
