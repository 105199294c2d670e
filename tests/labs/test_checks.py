"""The lab checks judge what a run wrote, and they fail when it is wrong: each case builds a small
run directory by hand (one fault in it) and runs the real check script on it. No TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
LABS = REPO / "labs"
sys.path.insert(0, str(LABS))

from labkit.checks import ancestors, executed_on, graph_nodes, parse_pbtxt  # noqa: E402


def node(name: str, op: str, *inputs: str, device: str = "") -> str:
    fields = "".join(f' input: "{i}"' for i in inputs)
    where = f' device: "{device}"' if device else ""
    attr = 'attr { key: "T" value { type: DT_INT32 } }'
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
    (run / "run.json").write_text(json.dumps({"lab": lab, **(meta or {})}))
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


def lab01_graph(output_inputs: tuple[str, str] = ("add1", "mul1")) -> str:
    return (node("a", "Const") + node("b", "Const") + node("c", "Const") + node("d", "Const")
            + node("add1", "AddV2", "a", "b") + node("mul1", "Mul", "b", "c")
            + node("add2", "AddV2", "c", "d") + node("output", "AddV2", *output_inputs))


def test_pbtxt_reader_follows_edges_and_placement() -> None:
    nodes = graph_nodes(lab01_graph())
    assert nodes["mul1"] == {"op": "Mul", "device": "", "inputs": ["b", "c"]}
    assert ancestors(nodes, "output") == {"add1", "mul1", "a", "b", "c"}
    ran = executed_on(stats({"a": "ps:0", "add1": "worker:0"}))
    assert ran == {"a": {"/job:ps/replica:0/task:0/device:CPU:0"},
                   "add1": {"/job:worker/replica:0/task:0/device:CPU:0"}}
    assert parse_pbtxt('x { y: "a \\" b" z: -1.5e-05 }') == {"x": [{"y": ['a \\" b'],
                                                                     "z": ["-1.5e-05"]}]}


def test_lab01_passes_a_good_run_and_fails_when_add2_feeds_output(tmp_path: Path) -> None:
    results = {"value": 9, "function_value": 9}
    good = make_run(tmp_path / "good", "01", results,
                    {"graph.pbtxt": lab01_graph(), "function_graph.pbtxt": lab01_graph()})
    assert check("01-dataflow-graph", good)[0] == 0
    bad = make_run(tmp_path / "bad", "01", results,
                   {"graph.pbtxt": lab01_graph(("add1", "add2")),
                    "function_graph.pbtxt": lab01_graph()})
    code, out = check("01-dataflow-graph", bad)
    assert code == 1 and out[0].startswith("FAIL: in graph.pbtxt, output does not depend on")
    assert out[1].startswith("hint: ")


PINNED = {"a": "ps:0", "b": "ps:0", "c": "ps:0", "d": "ps:0", "add1": "worker:0",
          "mul1": "worker:1", "add2": "worker:0", "output": "worker:0"}


def lab02_graph() -> str:
    def dev(task: str) -> str:
        return "/job:{}/task:{}".format(*task.split(":"))
    return "".join(node(n, "Op", device=dev(t)) for n, t in PINNED.items())


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
    run = make_run(tmp_path, "02", {"value": 9, "ps": 1, "workers": 2},
                   {"graph.pbtxt": lab02_graph(), "step_stats.pbtxt": stats(ran)})
    code, out = check("02-local-cluster", run)
    if reason is None:
        assert code == 0 and out[0].startswith("PASS: output = 9"), out
    else:
        assert code == 1 and out[0] == reason, out


def test_training_check_fails_below_the_accuracy_threshold(tmp_path: Path) -> None:
    run = make_run(tmp_path, "07", {"test_accuracy": 0.94, "weight_checksums": [1.0, 1.0]},
                   meta={"counts": {"worker": 2}})
    code, out = check("07-multi-worker-mirrored", run)
    assert code == 1 and out[0] == "FAIL: test accuracy 0.9400 is below 0.95"


def test_lab07_fails_when_the_workers_weights_differ(tmp_path: Path) -> None:
    run = make_run(tmp_path, "07", {"test_accuracy": 0.97, "weight_checksums": [1.0, 1.5]},
                   meta={"counts": {"worker": 2}})
    code, out = check("07-multi-worker-mirrored", run)
    assert code == 1 and out[0] == "FAIL: the workers' weights differ: checksums [1.0, 1.5]"


def test_lab05_fails_on_asynchronous_looking_steps(tmp_path: Path) -> None:
    tasks = {"tasks/worker-0.json": json.dumps({"local_steps": 250}),
             "tasks/worker-1.json": json.dumps({"local_steps": 251})}
    run = make_run(tmp_path, "05", {"test_accuracy": 0.97, "replicas_to_aggregate": 2,
                                    "global_step": 500}, tasks, meta={"counts": {"worker": 2}})
    code, out = check("05-between-graph-sync", run)
    assert code == 1 and "that is asynchronous training" in out[0]


def test_lab05_fails_when_replicas_do_not_match_the_workers(tmp_path: Path) -> None:
    run = make_run(tmp_path, "05", {"test_accuracy": 0.97, "replicas_to_aggregate": 2,
                                    "global_step": 500}, meta={"counts": {"worker": 3}})
    code, out = check("05-between-graph-sync", run)
    assert code == 1 and out[0] == "FAIL: replicas_to_aggregate is 2, the run has 3 workers"


def test_lab04_fails_when_a_ps_holds_no_variables(tmp_path: Path) -> None:
    updates = [f"Adam/update_{v}/ResourceApplyAdam" for v in ("w1", "b1", "w2", "b2")]
    files = {"checkpoints/graph.pbtxt": "".join(node(u, "ResourceApplyAdam") for u in updates),
             "step_stats.pbtxt": stats(dict.fromkeys(updates, "ps:0")),
             "tasks/worker-0.json": json.dumps({"local_steps": 500}),
             "tasks/worker-1.json": json.dumps({"local_steps": 500})}
    run = make_run(tmp_path, "04", {"test_accuracy": 0.97}, files,
                   meta={"counts": {"ps": 2, "worker": 2}})
    code, out = check("04-between-graph-async", run)
    assert code == 1 and out[0] == ("FAIL: Adam updates ran on {'ps:0': 4}; ps tasks without "
                                    "any: ps:1")


def test_check_without_results_fails_and_without_a_run_is_unusable(tmp_path: Path) -> None:
    run = make_run(tmp_path, "04", {})
    (run / "output" / "results.json").unlink()
    code, out = check("04-between-graph-async", run)
    assert code == 1 and out[0] == "FAIL: results.json is missing from the run's output"
    assert check("04-between-graph-async", tmp_path / "nowhere")[0] == 2
