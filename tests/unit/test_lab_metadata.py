"""lab.toml validation, lab lookup, and from options to a plan (labctl.labs, labctl.plan)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl import labs, plan
from labctl.errors import UsageError
from labctl.labs import LabError, load_lab

GOOD = """
title = "Async"
kind = "local"
program = "train.py"
success = "worker:0"
shutdown = "done-queue"

[tasks]
ps = { default = 1, min = 1, max = 4 }
worker = { default = 2, min = 1, max = 8 }

[args]
steps = 1000
dataset = "digits"
"""


def make_lab(root: Path, name: str, toml: str, program: str = "train.py") -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "lab.toml").write_text(toml)
    (path / program).write_text("")
    return path


@pytest.fixture
def labs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABCTL_LABS_DIR", str(tmp_path))
    return tmp_path


def test_good_lab(labs_root: Path) -> None:
    lab = load_lab(make_lab(labs_root, "04-async", GOOD))
    assert (lab.number, lab.kind, lab.shutdown, lab.progress) == (4, "local", "done-queue", True)
    assert lab.tasks["worker"] == labs.Count(2, 1, 8)
    assert lab.success_task.name == "worker:0"
    assert lab.args == {"steps": 1000, "dataset": "digits"}


def test_single_process_lab_and_k8s_table(labs_root: Path) -> None:
    toml = 'title = "G"\nkind = "cluster"\nprogram = "train.py"\n[k8s]\nname = "g"\n'
    lab = load_lab(make_lab(labs_root, "01-graph", toml))
    assert lab.tasks == {} and lab.success_task.name == "main" and lab.k8s == {"name": "g"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace('title = "Async"\n', ""), "`title` must be a str"),
        (lambda t: t.replace('kind = "local"', 'kind = "remote"'), "kind must be one of"),
        (lambda t: t.replace('"done-queue"', '"never"'), "shutdown must be one of"),
        (lambda t: t.replace('"worker:0"', '"worker:3"'), "success must name a task"),
        (lambda t: t.replace('"worker:0"', '"chief:0"'), "success must name a task"),
        (lambda t: t.replace("min = 1, max = 8", "min = 3, max = 8"), "min <= default"),
        (lambda t: t.replace("ps = {", "gpu = {"), "unknown task type"),
        (lambda t: t.replace(", max = 4 }", " }"), "expected { default"),
        (lambda t: "colour = 1\n" + t, "unknown key(s) colour"),
        (lambda t: t.replace("train.py", "missing.py"), "does not exist"),
        (lambda t: t + "[[", "lab.toml:"),
    ],
)
def test_invalid_lab_toml(labs_root: Path, change, message: str) -> None:
    path = make_lab(labs_root, "04-async", change(GOOD))
    with pytest.raises(LabError, match=None) as info:
        load_lab(path)
    assert message in str(info.value) and "lab.toml" in str(info.value)


def test_resolve_by_number_name_or_suffix(labs_root: Path) -> None:
    path = make_lab(labs_root, "04-async", GOOD)
    make_lab(labs_root, "05-sync", GOOD)
    (labs_root / "labkit").mkdir()
    for ident in ("04", "4", "04-async", "async"):
        assert labs.resolve(ident) == path
    assert [p.name for p in labs.lab_dirs()] == ["04-async", "05-sync"]


def test_resolve_unknown_lists_valid_labs(labs_root: Path) -> None:
    make_lab(labs_root, "04-async", GOOD)
    with pytest.raises(UsageError, match=r"unknown lab '9'; valid labs: 04-async"):
        labs.resolve("9")


def test_plan_counts_within_bounds(labs_root: Path) -> None:
    lab = load_lab(make_lab(labs_root, "04-async", GOOD))
    assert plan.resolve_counts(lab, {"worker": 3, "ps": None}) == {"ps": 1, "worker": 3}
    with pytest.raises(UsageError, match=r"--workers 0 is outside 1\.\.8"):
        plan.resolve_counts(lab, {"worker": 0})
    with pytest.raises(UsageError, match=r"--ps 5 is outside 1\.\.4"):
        plan.resolve_counts(lab, {"ps": 5})


def test_plan_ps_for_a_lab_without_ps(labs_root: Path) -> None:
    toml = GOOD.replace("ps = { default = 1, min = 1, max = 4 }\n", "")
    lab = load_lab(make_lab(labs_root, "07-mirrored", toml))
    with pytest.raises(UsageError, match="takes no --ps"):
        plan.resolve_counts(lab, {"ps": 1})


def test_plan_args_and_argv(labs_root: Path) -> None:
    lab = load_lab(make_lab(labs_root, "04-async", GOOD))
    args = plan.resolve_args(lab, {"steps": 50, "dataset": None})
    assert plan.args_argv(args) == ["--steps", "50", "--dataset", "digits"]
    assert plan.args_argv({"fast": True, "slow": False, "batch_size": 8}) == [
        "--fast", "--batch-size", "8"]
    with pytest.raises(UsageError, match="takes no --learning-rate"):
        plan.resolve_args(lab, {"learning_rate": 0.1})


def test_set_overrides_a_labs_args_with_the_type_of_its_default(labs_root: Path) -> None:
    toml = GOOD + 'rows = 65536\nrate = 0.5\ntf1 = false\n'
    lab = load_lab(make_lab(labs_root, "12-sizing", toml))
    sets = ["rows=1024", "tf1=true", "rate=0.25", "dataset=mnist"]
    args = plan.resolve_args(lab, plan.arg_overrides(lab, 50, None, sets))
    assert args == {"steps": 50, "dataset": "mnist", "rows": 1024, "rate": 0.25, "tf1": True}
    assert plan.args_argv(args)[-5:] == ["--rows", "1024", "--rate", "0.25", "--tf1"]
    for text, message in [("rows", "expected NAME=VALUE"), ("nope=1", "options: steps, "),
                          ("rows=1.5", "must be a whole number"), ("rate=x", "must be a number"),
                          ("tf1=yes", "must be true or false")]:
        with pytest.raises(UsageError, match=message):
            plan.arg_overrides(lab, None, None, [text])


def test_plan_kills_must_name_tasks_of_the_job(labs_root: Path) -> None:
    lab = load_lab(make_lab(labs_root, "04-async", GOOD))
    made = plan.plan_lab(lab, {"worker": 3}, {}, ["worker:2@10"])
    assert [str(k) for k in made.kills] == ["worker:2@10"]
    with pytest.raises(UsageError, match="no task 'worker:2'"):
        plan.plan_lab(lab, {}, {}, ["worker:2@10"])
    with pytest.raises(UsageError, match="bad --kill"):
        plan.plan_lab(lab, {}, {}, ["worker:1"])
