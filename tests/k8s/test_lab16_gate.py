"""Lab 16, continuous training with a gate, as far as it runs without a cluster.

- the gate on real SavedModels in a temporary directory: the first candidate becomes version 1,
  a better one the next version by one rename (the version complete, nothing half-made left), a
  worse one, a tie and one short of the margin are rejected and stay in candidates/, and every
  decision is one line of gate.jsonl; a bad invocation is one line and exit 2;
- the program end to end (two cycles of retrain.py: published, then a candidate trained on
  wrong labels, rejected) and the check on what they left, with TF Serving's model status
  replies recorded as its REST API documents them, through a fake API server's service proxy:
  it passes, and it fails, naming the cause, on a worse candidate published, a version the
  server serves that the gate did not publish, a served version that changed again, no
  rejection, a logged accuracy the models do not have, and a rejected candidate among the
  versions;
- the CronJob runs the program labctl runs, with the lab's options.
TF Serving itself runs only on a cluster.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _fake_cluster import FakeApi
from _manifests import by_kind, load, render
from test_k8s_labs import LABS, module, run_dir, run_program

LAB = LABS / "16-gated-continuous-training"
NS = "tf-gate"


def status(*versions: tuple[int, str]) -> dict[str, Any]:
    """GET /v1/models/digits as TF Serving answers it (REST API, model status)."""
    return {"model_version_status": [
        {"version": str(v), "state": s, "status": {"error_code": "OK", "error_message": ""}}
        for v, s in versions]}


class ServingApi(FakeApi):
    """The fake API server, with the service proxy answering as TF Serving would."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__()
        self.reply = reply
        self.asked: list[tuple[str, str, int, str]] = []

    def proxy(self, namespace: str, service: str, port: int, path: str,
              body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.asked.append((namespace, service, port, path))
        return copy.deepcopy(self.reply)


# --- the gate, on SavedModels in tmp_path ---------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A weak model (few steps) and a strong one, saved as candidates are."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(LABS))
        from labkit import data, serving

    dataset = data.load("digits")
    out = tmp_path_factory.mktemp("models")
    for name, steps in (("weak", 10), ("strong", 300)):
        net = serving.Digits(dataset.features, seed=1)
        serving.train(net, dataset, steps=steps, batch_size=64, learning_rate=0.01,
                      eval_every=steps, seed=1)
        serving.save(net, out / name)
    return {"weak": out / "weak", "strong": out / "strong"}


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return module(LAB / "gate.py", monkeypatch)


def candidate(output: Path, model: Path, name: str) -> Path:
    path = output / "candidates" / name
    shutil.copytree(model, path)
    return path


def lines(output: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (output / "gate.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.labs
def test_gate_publishes_the_first_candidate_then_only_a_better_one(
        tmp_path: Path, models: dict[str, Path], gate: ModuleType) -> None:
    out = tmp_path / "volume"
    first = gate.gate(out, candidate(out, models["weak"], "a"))
    assert (first["decision"], first["served_version"], first["published_version"]) == (
        "published", None, 1)
    better = gate.gate(out, candidate(out, models["strong"], "b"))
    assert (better["decision"], better["served_version"], better["published_version"]) == (
        "published", 1, 2)
    assert better["candidate_accuracy"] > better["served_accuracy"] == first["candidate_accuracy"]
    # Published by a rename: the candidate is gone, the version complete, nothing half-made.
    assert sorted(p.name for p in (out / "candidates").iterdir()) == []
    assert sorted(p.name for p in (out / "digits").iterdir()) == ["1", "2"]
    for version in ("1", "2"):
        saved = out / "digits" / version
        assert (saved / "saved_model.pb").is_file()
        assert (saved / "variables" / "variables.index").is_file()
    assert not list(out.rglob(".staging*"))

    worse = gate.gate(out, candidate(out, models["weak"], "c"))
    tie = gate.gate(out, candidate(out, out / "digits" / "2", "d"))
    assert [(d["decision"], d["served_version"], d["published_version"]) for d in (worse, tie)] \
        == [("rejected", 2, None)] * 2
    assert tie["candidate_accuracy"] == tie["served_accuracy"]  # strictly better, or no
    assert sorted(p.name for p in (out / "candidates").iterdir()) == ["c", "d"]
    assert sorted(p.name for p in (out / "digits").iterdir()) == ["1", "2"]
    assert lines(out) == [first, better, worse, tie]
    assert set(first) == {"time", "candidate", "served_version", "candidate_accuracy",
                          "served_accuracy", "margin", "decision", "published_version"}
    assert first["candidate"] == "candidates/a"


@pytest.mark.slow
@pytest.mark.labs
def test_gate_needs_the_margin_and_wants_its_candidate_on_the_volume(
        tmp_path: Path, models: dict[str, Path], gate: ModuleType) -> None:
    out = tmp_path / "volume"
    gate.gate(out, candidate(out, models["weak"], "a"))
    short = gate.gate(out, candidate(out, models["strong"], "b"), margin=0.9)
    assert short["decision"] == "rejected" and short["margin"] == 0.9
    assert gate.better(0.9, None, 0.5) and not gate.better(0.9, 0.9, 0.0)
    env = {**os.environ, "PYTHONPATH": str(LABS)}
    for argv, message in [
        (["--candidate", str(models["strong"])], "must lie under --output-dir"),
        (["--candidate", str(out / "nothing")], "no SavedModel at"),
        (["--candidate", str(out / "candidates" / "b"), "--margin", "2"], "must be from 0 to 1"),
    ]:
        proc = subprocess.run([sys.executable, str(LAB / "gate.py"), "--output-dir", str(out),
                               *argv], capture_output=True, text=True, env=env, timeout=60,
                              check=False)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    assert len(lines(out)) == 2


# --- the program and the check ----------------------------------------------------------------
@pytest.fixture(scope="module")
def cycles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two cycles of the real program on one volume: a published one, then a bad one."""
    run = run_dir(tmp_path_factory.mktemp("lab16") / "run", {
        "lab": LAB.name, "target": "k8s", "status": "succeeded", "namespace": NS})
    run_program(LAB / "retrain.py", run / "output", "--steps", "200")
    run_program(LAB / "retrain.py", run / "output", "--steps", "200", "--bad-labels", "0.5")
    return run


def verdict(run: Path, reply: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    from labctl.k8s import api as k8s_api

    check = module(LAB / "check.py", monkeypatch)
    fake = ServingApi(reply)
    monkeypatch.setattr(k8s_api, "Api", lambda *_: fake)
    from labkit.checks import Run

    try:
        passed = check.check(Run(run))
    except check.checks.Failed as failed:
        return f"FAIL: {failed.reason} | {failed.hint}"
    assert fake.asked == [(NS, "digits-serving", 8501, "v1/models/digits")]
    return f"PASS: {passed}"


def edit(run: Path, tmp_path: Path, change: Any) -> Path:
    """A copy of the run, its output changed by `change(output, decisions)`."""
    copied = tmp_path / "run"
    shutil.copytree(run, copied)
    out = copied / "output"
    log = lines(out)
    change(out, log)
    (out / "gate.jsonl").write_text("".join(json.dumps(d) + "\n" for d in log))
    return copied


def publish_the_rejected(out: Path, log: list[dict[str, Any]]) -> None:
    """What a gate without a rule would have done with the bad candidate."""
    (out / log[-1]["candidate"]).rename(out / "digits" / "2")
    log[-1].update(decision="published", published_version=2)


def forget_the_rejection(out: Path, log: list[dict[str, Any]]) -> None:
    log.pop()


def flatter_the_candidate(out: Path, log: list[dict[str, Any]]) -> None:
    log[-1]["candidate_accuracy"] = 0.9


def copy_the_rejected_in(out: Path, log: list[dict[str, Any]]) -> None:
    shutil.copytree(out / log[-1]["candidate"], out / "digits" / "2")


AS_RUN = status((1, "AVAILABLE"))


@pytest.mark.slow
@pytest.mark.labs
@pytest.mark.parametrize(("change", "reply", "expected"), [
    (None, AS_RUN, r"PASS: gate: version 1 published \(0\.9\d+\), then candidates/\S+ "
     r"rejected \(0\.[0-7]\d+ < 0\.9\d+\) .*TF Serving reports \{1: 'AVAILABLE'\}"),
    (publish_the_rejected, status((2, "AVAILABLE"), (1, "END")),
     r"FAIL: version 2 was published with accuracy 0\.[0-7]\d+, not better than version 1's"),
    (None, status((2, "AVAILABLE"), (1, "END")),
     r"FAIL: TF Serving has served version\(s\) \[2\], which the gate never published"),
    (None, status((1, "END")), r"FAIL: TF Serving reports \{1: 'END'\}, not version 1 AVAILABLE"),
    (forget_the_rejection, AS_RUN, r"FAIL: no candidate was rejected after version 1"),
    (flatter_the_candidate, AS_RUN, r"FAIL: the gate logged 0\.9 vs 0\.9\d+ for candidates/"),
    (copy_the_rejected_in, AS_RUN, r"FAIL: digits/ holds \['1', '2'\], the gate published \[1\]"),
    (None, {"error": "Servable not found for request: Latest(digits)"},
     r"FAIL: cannot ask TF Serving: Servable not found"),
])
def test_lab16_check_against_recorded_model_status(
        cycles: Path, change: Any, reply: dict[str, Any], expected: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = lines(cycles / "output")
    assert [d["decision"] for d in log] == ["published", "rejected"]
    assert log[1]["candidate_accuracy"] < 0.8 < log[0]["candidate_accuracy"]
    run = edit(cycles, tmp_path, change) if change else cycles
    said = verdict(run, reply, monkeypatch)
    assert re.match(expected, said), said


def test_the_cronjob_runs_what_labctl_runs_with_the_labs_options() -> None:
    lab = load("16")
    docs = render(lab)
    (job,) = by_kind(docs, "Job").values()
    (cron,) = by_kind(docs, "CronJob").values()
    (labctl_runs,) = job["spec"]["template"]["spec"]["containers"]
    (cron_runs,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert cron_runs["command"] == labctl_runs["command"]
    env = {e["name"]: e["value"] for e in cron_runs["env"]}
    # Each option is the lab's default, or an env var holding it (kubectl set env changes it).
    options = dict(zip(cron_runs["args"][::2], cron_runs["args"][1::2], strict=True))
    given = {k: env[v[2:-1]] if v.startswith("$(") else v for k, v in options.items()}
    wanted = dict(zip(labctl_runs["args"][::2], labctl_runs["args"][1::2], strict=True))
    assert given == wanted
    assert {e["name"]: e["value"] for e in labctl_runs["env"]}.items() <= env.items()
    spec = cron["spec"]
    assert (spec["concurrencyPolicy"], spec["suspend"]) == ("Forbid", True)
    assert spec["successfulJobsHistoryLimit"] and spec["failedJobsHistoryLimit"]
