"""Each local lab's README, followed as written: its "Run it" and "Check it" commands run in a new
shell (a bare environment: no venv activated, nothing on PATH but the system's), from the
repository's root, and what they print has the shape the README shows.

The shape: every line of the README's output blocks in those sections must match a line of the
real output, with numbers, run ids and the run directory's location free. This is also the
end-to-end test of each local lab: real TensorFlow over real gRPC, every check PASS.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from _labrun import LOCAL_LABS, REPO, blocks

SECTIONS = ("## Run it", "## Check it")
NUMBER = re.compile(r"\d+(?:\.\d+)?")


FREE = {".labctl/runs/": r"\S*runs/", "…": ".*"}  # where runs live; what the README elides


def shape(line: str) -> re.Pattern[str]:
    """A README output line as a pattern: numbers, spacing, where the run directory lives and
    what the README elides with … are free."""
    parts = re.split(r"(\d+(?:\.\d+)?|\.labctl/runs/|…|\s+)", line.strip())
    return re.compile("".join(
        r"[\d.]+" if NUMBER.fullmatch(p) else r"\s+" if p.isspace() else FREE.get(p, re.escape(p))
        for p in parts if p))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.mark.labs
@pytest.mark.slow
@pytest.mark.parametrize("lab", LOCAL_LABS, ids=[p.name[:2] for p in LOCAL_LABS])
def test_readme_commands_work_in_a_new_terminal(tmp_path: Path, lab: Path, home: Path) -> None:
    found = [(s, lang, body) for s, lang, body in blocks(lab / "README.md") if s in SECTIONS]
    commands = [c for s, lang, body in found if lang == "bash" for c in body if c.strip()]
    shown = [ln for s, lang, body in found if lang == "" for ln in body
             if ln.strip() and ln.strip() != "..."]
    assert commands and shown, f"{lab.name}/README.md has no commands or output to follow"
    # A new terminal has no labctl on PATH: the README's first command must put it there.
    assert commands[0].startswith(". .venv/bin/activate"), commands[0]
    if not (REPO / ".venv" / "bin" / "activate").is_file():
        pytest.skip("the README's venv, .venv, is not where `make` made it (VENV=...)")
    script = "\n".join(commands)
    # One user's terminals: the same HOME and runtime directory (so the labs share labctl's
    # pre-imported interpreter, as they do on a laptop), a state directory per lab.
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
           "XDG_RUNTIME_DIR": os.environ["XDG_RUNTIME_DIR"],
           "LABCTL_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-e", "-c", script], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{lab.name}: {script}\n{output[-4000:]}"
    lines = [ln.strip() for ln in output.splitlines()]
    missing = [ln for ln in shown if not any(shape(ln).fullmatch(out) for out in lines)]
    assert not missing, f"{lab.name}/README.md shows lines the run did not print: {missing}"
    # Every run it made succeeded without a restart (but those a --kill caused), its task exits
    # were clean, and a training lab's results.json holds the launcher contract's keys
    # (labs/README.md).
    runs = sorted((tmp_path / "state" / "runs").glob("*/2*"))
    assert runs, output[-2000:]
    for run in runs:
        meta = json.loads((run / "run.json").read_text())
        assert meta["status"] == "succeeded", (run, meta.get("reason"))
        assert meta["kills"] or all(t["restarts"] == 0 for t in meta["tasks"]), meta["tasks"]
        assert all(t["exit_code"] == 0 for t in meta["tasks"] if meta["shutdown"] == "done-queue")
        results = json.loads((run / "output" / "results.json").read_text())
        if "test_accuracy" in results:
            for key in ("lab", "dataset", "global_step", "wall_time_s", "startup_s",
                        "steps_per_sec"):
                assert key in results, (run, key)
            assert 0 < results["startup_s"] < results["wall_time_s"]


def test_a_new_terminal_has_no_labctl_until_the_venv_is_activated(tmp_path: Path) -> None:
    if not (REPO / ".venv" / "bin" / "activate").is_file():
        pytest.skip("the README's venv, .venv, is not where `make` made it (VENV=...)")
    env = {"HOME": str(tmp_path), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    bare = subprocess.run(["bash", "--noprofile", "--norc", "-c", "labctl list"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert bare.returncode == 127 and "labctl: command not found" in bare.stderr
    active = subprocess.run(["bash", "--noprofile", "--norc", "-c",
                             ". .venv/bin/activate && labctl list"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert active.returncode == 0 and "01-dataflow-graph" in active.stdout, active.stderr
