"""run.json has one definition (labctl/record.py): labctl and the checks' helper read the same
field names, and a record from a newer labctl is refused, not misread."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from labctl import record, rundir
from labctl.errors import UsageError
from labctl.record import RunRecord

REPO = Path(__file__).resolve().parents[2]
FIELDS = {f.name for f in dataclasses.fields(RunRecord)}


def test_a_record_round_trips_and_leaves_unset_fields_out(tmp_path: Path) -> None:
    run = rundir.RunDir(tmp_path)
    rec = RunRecord("04-x", target="local", counts={"worker": 2}, status="succeeded")
    run.save(rec)
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert on_disk["version"] == record.VERSION
    assert "namespace" not in on_disk  # a local run has none
    assert run.record() == rec


def test_unknown_fields_are_dropped_and_a_missing_file_reads_as_none(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"lab": "x", "from_the_future": 1}))
    assert rundir.RunDir(tmp_path).record() == RunRecord("x")
    assert rundir.RunDir(tmp_path / "none").record() is None


def test_labctl_refuses_a_record_from_a_newer_labctl(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"lab": "x", "version": record.VERSION + 1}))
    with pytest.raises(UsageError, match=r"newer labctl .* upgrade labctl"):
        rundir.RunDir(tmp_path).record()


def test_the_checks_refuse_a_record_from_a_newer_labctl(tmp_path: Path) -> None:
    (tmp_path / "output").mkdir()
    (tmp_path / "run.json").write_text(RunRecord(
        "01-x", status="succeeded", version=record.VERSION + 1).to_json())
    proc = subprocess.run([sys.executable, str(REPO / "labs/01-dataflow-graph/check.py"),
                           str(tmp_path)], env={"PYTHONPATH": str(REPO / "labs")},
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "written by a newer labctl" in proc.stderr


def test_the_checks_helper_knows_the_record_version() -> None:
    sys.path.insert(0, str(REPO / "labs"))
    try:
        from labkit import checks
    finally:
        sys.path.remove(str(REPO / "labs"))
    assert checks.RECORD_VERSION == record.VERSION


def record_keys(path: Path) -> set[str]:
    """The keys a lab's Python reads from run.json: `X.meta.get("k")`, `meta.get("k")`, and
    `X.meta["k"]`."""
    keys = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "get" and node.args \
                and isinstance(node.args[0], ast.Constant) and _is_meta(node.func.value):
            keys.add(node.args[0].value)
        if isinstance(node, ast.Subscript) and _is_meta(node.value) \
                and isinstance(node.slice, ast.Constant):
            keys.add(node.slice.value)
    return keys


def _is_meta(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "meta") or \
        (isinstance(node, ast.Name) and node.id == "meta")


def test_the_labs_read_run_json_by_the_record_s_field_names() -> None:
    read = {str(p.relative_to(REPO)): record_keys(p)
            for p in sorted((REPO / "labs").glob("*/*.py"))}
    assert read["labs/labkit/checks.py"] >= {"status", "counts", "tasks"}  # the scan works
    unknown = {path: keys - FIELDS for path, keys in read.items() if keys - FIELDS}
    assert not unknown, f"keys read from run.json that RunRecord does not define: {unknown}"
