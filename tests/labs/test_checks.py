"""The lab checks judge what a run left behind, and they fail when it is wrong: each case builds a
small run directory by hand (one fault in it: a graph, a trace, a checkpoint written by
tests/labs/_bundle.py, a run record) and runs the real check script on it. No TensorFlow: the
same checks on real runs, with mistakes made in the programs, are in test_mistakes.py."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from labctl.record import RunRecord

REPO = Path(__file__).resolve().parents[2]
LABS = REPO / "labs"
sys.path.insert(0, str(LABS))

import _bundle  # noqa: E402
from labkit import data  # noqa: E402
from labkit.checks import Failed, ancestors, executed_on, graph_nodes, parse_pbtxt  # noqa: E402

VALUES = {"a": 1, "b": 2, "c": 3, "d": 4}


def node(name: str, op: str, *inputs: str, device: str = "", value: int | None = None) -> str:
    fields = "".join(f' input: "{i}"' for i in inputs)
    where = f' device: "{device}"' if device else ""
    attr = 'attr { key: "T" value { type: DT_INT32 } }'
    if value is not None:
        tensor = f"tensor {{ dtype: DT_INT32 int_val: {value} }}"
        attr += f' attr {{ key: "value" value {{ {tensor} }} }}'
    return f'node {{ name: "{name}" op: "{op}"{fields}{where} {attr} }}\n'


def stats(ran: dict[str, str]) -> str:
    """step_stats text: node -> the task it ran on."""
    by_device: dict[str, list[str]] = {}
    for name, task in ran.items():
        job, index = task.split(":")
        by_device.setdefault(f"/job:{job}/replica:0/task:{index}/device:CPU:0", []).append(name)
    return "".join(
        f'dev_stats {{\n  device: "{device}"\n'
        + "".join(f'  node_stats {{ node_name: "{n}" all_start_micros: 1 }}\n' for n in names)
        + "}\n" for device, names in by_device.items())


def make_run(tmp: Path, lab: str, results: dict[str, Any], files: dict[str, str] | None = None,
             meta: dict[str, Any] | None = None) -> Path:
    run = tmp / "run"
    (run / "output").mkdir(parents=True)
    record = RunRecord(lab, status="succeeded").update(**(meta or {}))  # real field names only
    (run / "run.json").write_text(record.to_json())
    (run / "output" / "results.json").write_text(json.dumps(results))
    for name, text in (files or {}).items():
        (run / "output" / name).parent.mkdir(parents=True, exist_ok=True)
        (run / "output" / name).write_text(text)
    return run


def check(lab: str, run: Path) -> tuple[int, list[str]]:
    proc = subprocess.run([sys.executable, str(LABS / lab / "check.py"), str(run)],
                          env={"PYTHONPATH": str(LABS)}, capture_output=True, text=True,
                          timeout=30, check=False)
    return proc.returncode, proc.stdout.splitlines()


def lab01_graph(output_inputs: tuple[str, str] = ("add1", "mul1"), b: int = 2) -> str:
    values = {**VALUES, "b": b}
    return ("".join(node(n, "Const", value=v) for n, v in values.items())
            + node("add1", "AddV2", "a", "b") + node("mul1", "Mul", "b", "c")
            + node("add2", "AddV2", "c", "d") + node("output", "AddV2", *output_inputs))


def test_pbtxt_reader_follows_edges_and_placement() -> None:
    nodes = graph_nodes(lab01_graph())
    assert nodes["mul1"] == {"op": "Mul", "device": "", "inputs": ["b", "c"], "data": ["b", "c"],
                             "value": None}
    assert nodes["c"]["value"] == 3
    assert ancestors(nodes, "output") == {"add1", "mul1", "a", "b", "c"}
    ran = executed_on(stats({"a": "ps:0", "add1": "worker:0"}))
    assert ran == {"a": {"/job:ps/replica:0/task:0/device:CPU:0"},
                   "add1": {"/job:worker/replica:0/task:0/device:CPU:0"}}
    assert parse_pbtxt('x { y: "a \\" b" z: -1.5e-05 }') == {"x": [{"y": ['a \\" b'],
                                                                     "z": ["-1.5e-05"]}]}


@pytest.mark.parametrize(("graph", "printed", "reason"), [
    (lab01_graph(), 9, None),
    (lab01_graph(("add1", "add2")), 10, "FAIL: the graph in graph.pbtxt computes output = 10, "
                                        "expected 9"),
    (lab01_graph(b=5), 9, "FAIL: the graph in graph.pbtxt computes output = 21, expected 9"),
    (lab01_graph(), 10, "FAIL: the program reported 10, but its graph in graph.pbtxt computes 9"),
])
def test_lab01_computes_the_value_from_the_saved_graph(tmp_path: Path, graph: str, printed: int,
                                                       reason: str | None) -> None:
    run = make_run(tmp_path, "01", {"value": printed, "function_value": 9},
                   {"graph.pbtxt": graph, "function_graph.pbtxt": lab01_graph()})
    code, out = check("01-dataflow-graph", run)
    if reason is None:
        assert code == 0 and out[0].startswith("PASS: both saved graphs"), out
    else:
        assert code == 1 and out[0] == reason and out[1].startswith("hint: "), out


def test_lab01_fails_when_add2_is_on_the_path_even_if_the_value_is_right(tmp_path: Path) -> None:
    graph = lab01_graph().replace('input: "mul1"', 'input: "mul1" input: "^add2"')
    run = make_run(tmp_path, "01", {"value": 9, "function_value": 9},
                   {"graph.pbtxt": graph, "function_graph.pbtxt": lab01_graph()})
    code, out = check("01-dataflow-graph", run)
    assert code == 1 and out[0] == "FAIL: in graph.pbtxt, add2 (or d) is on output's path"


PINNED = {"a": "ps:0", "b": "ps:0", "c": "ps:0", "d": "ps:0", "add1": "worker:0",
          "mul1": "worker:1", "add2": "worker:0", "output": "worker:0"}


def lab02_graph() -> str:
    def dev(task: str) -> str:
        return "/job:{}/task:{}".format(*task.split(":"))
    ops = {"add1": ("AddV2", "a", "b"), "mul1": ("Mul", "b", "c"), "add2": ("AddV2", "c", "d"),
           "output": ("AddV2", "add1", "mul1")}
    return "".join(node(n, *ops.get(n, ("Const",)), device=dev(t), value=VALUES.get(n))
                   for n, t in PINNED.items())


@pytest.mark.parametrize(("ran", "reason"), [
    ({**{n: t for n, t in PINNED.items() if n not in ("d", "add2")}}, None),
    ({**{n: t for n, t in PINNED.items() if n not in ("d", "add2")}, "mul1": "worker:0"},
     "FAIL: mul1 was pinned to worker:1 but ran on worker:0"),
    ({n: t for n, t in PINNED.items() if n not in ("d", "add2", "b")},
     "FAIL: b was pinned to ps:0 but ran on no task"),
    (dict(PINNED), "FAIL: d ran although output does not need it"),
])
def test_lab02_judges_placement_from_the_trace(tmp_path: Path, ran: dict[str, str],
                                               reason: str | None) -> None:
    run = make_run(tmp_path, "02", {"value": 9},
                   {"graph.pbtxt": lab02_graph(), "step_stats.pbtxt": stats(ran)},
                   meta={"counts": {"ps": 1, "worker": 2}})
    code, out = check("02-local-cluster", run)
    if reason is None:
        assert code == 0 and out[0].startswith("PASS: output = 9"), out
    else:
        assert code == 1 and out[0] == reason, out



# --- the training labs: weights from a checkpoint, evaluated by the check ----------------------

def trained_weights() -> dict[str, np.ndarray]:
    """The labs' MLP trained with numpy (full-batch gradient descent, 0.3 s): 0.97 on digits."""
    ds = data.load("digits")
    rng = np.random.default_rng(0)
    w = {"w1": rng.normal(0, 0.2, (64, 64)), "b1": np.zeros(64),
         "w2": rng.normal(0, 0.2, (64, 10)), "b2": np.zeros(10)}
    w = {k: v.astype(np.float32) for k, v in w.items()}
    onehot = np.eye(10, dtype=np.float32)[ds.y_train]
    for _ in range(300):
        h = np.maximum(ds.x_train @ w["w1"] + w["b1"], 0)
        z = h @ w["w2"] + w["b2"]
        p = np.exp(z - z.max(1, keepdims=True))
        g = (p / p.sum(1, keepdims=True) - onehot) / len(onehot)
        gh = g @ w["w2"].T * (h > 0)
        for name, grad in (("w2", h.T @ g), ("b2", g.sum(0)), ("w1", ds.x_train.T @ gh),
                           ("b1", gh.sum(0))):
            w[name] -= 0.5 * grad
    return w


WEIGHTS = trained_weights()


def tf2(weights: dict[str, np.ndarray], **counters: int) -> dict[str, np.ndarray]:
    """Tensors as a TF2 tf.train.Checkpoint of labkit.model.keras_weights names them."""
    out = {f"weights/{k}/.ATTRIBUTES/VARIABLE_VALUE": v for k, v in weights.items()}
    out.update({f"{k}/.ATTRIBUTES/VARIABLE_VALUE": np.array(v, np.int64)
                for k, v in counters.items()})
    return out


def test_weights_trained_here_pass_and_random_weights_fail_lab07(tmp_path: Path) -> None:
    meta = {"counts": {"worker": 2}, "args": {"steps": 400}}
    good = make_run(tmp_path / "good", "07", {}, meta=meta)
    for i in range(2):
        _bundle.write(good / "output" / f"checkpoints/worker-{i}/weights",
                     tf2(WEIGHTS, **{"optimizer/_iterations": 400}))
    code, out = check("07-multi-worker-mirrored", good)
    assert code == 0 and out[0].startswith("PASS: test accuracy 0.97"), out
    # The copies differ in one weight by one step of Adam: not an all-reduce.
    off = {**WEIGHTS, "b2": WEIGHTS["b2"] + np.float32(1e-3)}
    _bundle.write(good / "output" / "checkpoints/worker-1/weights",
                 tf2(off, **{"optimizer/_iterations": 400}))
    code, out = check("07-multi-worker-mirrored", good)
    assert code == 1 and out[0] == ("FAIL: worker-1's weights differ from worker-0's (b2; "
                                    "largest difference 0.001)"), out
    # Untrained weights: the accuracy is computed here, whatever results.json says.
    bad = make_run(tmp_path / "bad", "07", {"test_accuracy": 0.99}, meta=meta)
    rng = np.random.default_rng(1)
    noise = {k: rng.normal(0, 0.1, v.shape).astype(np.float32) for k, v in WEIGHTS.items()}
    for i in range(2):
        _bundle.write(bad / "output" / f"checkpoints/worker-{i}/weights",
                     tf2(noise, **{"optimizer/_iterations": 400}))
    code, out = check("07-multi-worker-mirrored", bad)
    assert code == 1 and re.fullmatch(r"FAIL: the trained weights \(checkpoints/worker-0/weights"
                                      r"\) reach a test accuracy of 0\.\d+, below 0\.95", out[0])


def test_lab07_needs_one_copy_per_worker_and_every_step(tmp_path: Path) -> None:
    run = make_run(tmp_path, "07", {}, meta={"counts": {"worker": 3}, "args": {"steps": 400}})
    _bundle.write(run / "output" / "checkpoints/worker-0/weights",
                 tf2(WEIGHTS, **{"optimizer/_iterations": 400}))
    _bundle.write(run / "output" / "checkpoints/worker-1/weights",
                 tf2(WEIGHTS, **{"optimizer/_iterations": 350}))
    code, out = check("07-multi-worker-mirrored", run)
    assert code == 1 and out[0] == ("FAIL: the last checkpoint (weights) is at step 350, the run "
                                    "asked for 400"), out
    _bundle.write(run / "output" / "checkpoints/worker-1/weights",
                 tf2(WEIGHTS, **{"optimizer/_iterations": 400}))
    code, out = check("07-multi-worker-mirrored", run)
    assert code == 1 and out[0] == ("FAIL: worker-2 wrote no copy of its weights "
                                    "(checkpoints/worker-2/)"), out


@pytest.mark.parametrize(("shards", "ps", "reason"), [
    ({"w1": 1, "b1": 2, "w2": 1, "b2": 2}, 2, None),
    ({"w1": 1, "b1": 1, "w2": 1, "b2": 1}, 1, None),
    ({"w1": 0, "b1": 0, "w2": 0, "b2": 0}, 1, "FAIL: w1, b1, w2, b2 were saved by the coordinator "
                                             "itself (the shard of its save_counter): they live "
                                             "on the chief, not on a ps"),
    ({"w1": 1, "b1": 1, "w2": 1, "b2": 1}, 2, "FAIL: the 4 weights are held by 1 task(s); with 2 "
                                             "ps tasks they should be spread over 2"),
])
def test_lab06_reads_placement_from_the_checkpoint_shards(tmp_path: Path, shards: dict[str, int],
                                                          ps: int, reason: str | None) -> None:
    run = make_run(tmp_path, "06", {}, meta={"counts": {"ps": ps, "worker": 2},
                                             "args": {"steps": 600}})
    tensors = tf2(WEIGHTS, save_counter=12, global_step=600)
    where = {f"weights/{k}/.ATTRIBUTES/VARIABLE_VALUE": v for k, v in shards.items()}
    where["global_step/.ATTRIBUTES/VARIABLE_VALUE"] = 1
    _bundle.write(run / "output" / "checkpoints" / "ckpt-600", tensors, where)
    code, out = check("06-parameter-server-strategy", run)
    if reason is None:
        assert code == 0 and out[0].startswith("PASS: test accuracy 0.97"), out
        assert "the workers ran 600 steps (global_step in the checkpoint)" in out[0]
    else:
        assert code == 1 and out[0] == reason, out


TRAINING = ["03-in-graph-replication", "04-between-graph-async", "05-between-graph-sync",
            "06-parameter-server-strategy", "07-multi-worker-mirrored"]
CLAIMS = {"test_accuracy": 0.99, "global_step": 600, "variables": {"w1": "/job:ps/task:0"},
          "weight_checksums": [1.0, 1.0], "replicas_to_aggregate": 2, "towers": 2}


@pytest.mark.parametrize("lab", TRAINING)
def test_a_hand_written_results_json_passes_no_check(tmp_path: Path, lab: str) -> None:
    run = make_run(tmp_path, lab, CLAIMS, {"tasks/worker-0.json": '{"local_steps": 300}',
                                           "tasks/worker-1.json": '{"local_steps": 300}'},
                   meta={"counts": {"ps": 1, "worker": 2}, "args": {"steps": 600}})
    code, out = check(lab, run)
    assert code == 1, out
    assert out[0] in ("FAIL: no checkpoint in checkpoints/",
                      "FAIL: worker-0 wrote no copy of its weights (checkpoints/worker-0/)"), out


def test_a_checkpoint_cut_short_is_refused_with_a_reason(tmp_path: Path) -> None:
    run = make_run(tmp_path, "04", {}, meta={"counts": {"ps": 1, "worker": 2},
                                             "args": {"steps": 600}})
    prefix = run / "output" / "checkpoints" / "model.ckpt-600"
    _bundle.write(prefix, {**WEIGHTS, "global_step": np.array(600, np.int64)})
    data_file = Path(f"{prefix}.data-00000-of-00001")
    data_file.write_bytes(data_file.read_bytes()[:100])
    code, out = check("04-between-graph-async", run)
    assert code == 1 and out[0].startswith("FAIL: cannot read the checkpoint: w1: 0 bytes in "
                                           "model.ckpt-600.data-00000-of-00001, the index says "
                                           "16384 for shape [64, 64]"), out
    Path(f"{prefix}.index").write_bytes(b"not a table")
    assert "is not a TensorFlow table" in check("04-between-graph-async", run)[1][0]


@pytest.mark.parametrize(("status", "code", "line"), [
    ("failed", 1, "FAIL: the run failed: worker:1 exited 1"),
    ("running", 1, "FAIL: the run has not finished (status running)"),
    ("stopped", 1, "FAIL: the run stopped: worker:1 exited 1"),
    ("skipped", 3, "SKIP: worker:1 exited 1"),
])
def test_a_run_that_did_not_succeed_is_refused_before_its_output_is_read(
        tmp_path: Path, status: str, code: int, line: str) -> None:
    run = make_run(tmp_path, "04", CLAIMS, meta={"status": status,
                                                 "reason": "worker:1 exited 1"})
    assert check("04-between-graph-async", run)[:2] == (code, [line] + (
        [] if code == 3 else check("04-between-graph-async", run)[1][1:]))


def test_check_without_a_run_is_unusable(tmp_path: Path) -> None:
    assert check("04-between-graph-async", tmp_path / "nowhere")[0] == 2


@pytest.mark.parametrize(("killed_at", "resumed", "passes"), [
    (145, 101, True),   # the checkpoint of step 100 restored
    (145, 51, False),   # an older one: the steps 51-100 trained again
    (145, 1, False),    # no restore at all
    (100, 51, True),    # killed at step 100 itself: its checkpoint may not have been written
    (100, 1, False),
    (40, 1, True),      # killed before the first checkpoint
])
def test_lab13_resume_judges_the_checkpoints_before_the_kills_step(
        tmp_path: Path, killed_at: int, resumed: int, passes: bool) -> None:
    spec = importlib.util.spec_from_file_location("lab13_check", LABS / "13-fault-tolerance"
                                                  / "check.py")
    assert spec and spec.loader
    lab13 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lab13)
    run = make_run(tmp_path, "13-fault-tolerance", {}, meta={"kills": [
        {"task": "worker:0", "step": killed_at, "global_step": killed_at}]})
    (run / "logs").mkdir()
    for task in ("worker-0", "worker-1"):
        (run / "logs" / f"{task}.log").write_text(
            f"PROGRESS step={killed_at}\n----- labctl: restarting worker:0 (restart 1)\n"
            f"PROGRESS step={resumed}\n")
    saved = {step: SimpleNamespace(prefix=Path(f"ckpt-{step}")) for step in (50, 100, 150)}
    if passes:
        assert "killed at step" in lab13.check_resume(lab13.Run(run), saved)
    else:
        with pytest.raises(Failed, match=f"started again at step {resumed}"):
            lab13.check_resume(lab13.Run(run), saved)
