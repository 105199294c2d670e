"""Each local lab's answers.md (the answers to its README's "Try next"), run as written: every
```bash``` block, in order, from the repository's root with `.venv/bin` first on PATH, in one
shell per block (`bash -e`: the block stops at its first failing command).

A block must exit 0, unless a comment line in it says otherwise: `# expect exit 1: TEXT` for an
exercise whose point is a failure (a check that FAILs, a program TensorFlow refuses). TEXT must
then appear in the output, so that the block cannot pass by failing earlier for another reason.
```console``` blocks are output shown, never run. Runs go to a state directory of the test's own,
edits to scratch copies under its temporary directory (TMPDIR).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from _labrun import LOCAL_LABS, REPO, blocks

from labctl import procs

EXPECT = re.compile(r"^\s*#\s*expect exit (\d+)(?::\s*(.*\S))?\s*$")
BLOCK_TIMEOUT_S = 300  # the longest block runs two labs with restarts; a hang ends here


def scripts(answers: Path) -> list[tuple[str, int, str | None]]:
    """(script, expected exit code, text the output must hold) of every bash block."""
    found = []
    for _, lang, body in blocks(answers):
        if lang != "bash":
            continue
        expect = [m for line in body if (m := EXPECT.match(line))]
        assert len(expect) <= 1, f"{answers}: a block says `# expect exit` twice:\n{body}"
        code, text = (int(expect[0][1]), expect[0][2]) if expect else (0, None)
        assert code == 0 or text, (f"{answers}: `# expect exit {code}` needs the text that "
                                   f"proves the right failure (`# expect exit {code}: TEXT`)")
        found.append(("\n".join(body), code, text))
    return found


@pytest.mark.labs
@pytest.mark.slow
@pytest.mark.parametrize("lab", LOCAL_LABS, ids=[p.name[:2] for p in LOCAL_LABS])
def test_answers_run_as_written(tmp_path: Path, lab: Path) -> None:
    answers = lab / "answers.md"
    assert answers.is_file(), f"{lab.name} has a Try next section but no answers.md"
    found = scripts(answers)
    assert found, f"{answers} has no ```bash``` block to run"
    venv_bin = REPO / ".venv" / "bin"
    if not (venv_bin / "labctl").is_file():
        pytest.skip("the answers' venv, .venv, is not where `make` made it (VENV=...)")
    state = tmp_path / "state"
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
           "LABCTL_STATE_DIR": str(state), "TMPDIR": str(tmp_path)}
    env.pop("LABCTL_LABS_DIR", None)  # a block that wants a copy of the labs sets it itself
    started = time.monotonic()
    for script, code, text in found:
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-e", "-c", script], cwd=REPO,
                              env=env, capture_output=True, text=True,
                              timeout=BLOCK_TIMEOUT_S, check=False)
        output = proc.stdout + proc.stderr
        shown = f"{answers.relative_to(REPO)}:\n{script}\n--- output ---\n{output[-4000:]}"
        assert proc.returncode == code, f"exit {proc.returncode}, expected {code}: {shown}"
        assert text is None or text in output, f"the output lacks {text!r}: {shown}"
        left = [pid for pid, run in procs.run_processes().items() if run.is_relative_to(state)]
        assert left == [], f"processes left behind {left}: {shown}"
    print(f"{lab.name}: {len(found)} block(s) in {time.monotonic() - started:.0f} s")


def test_every_lab_with_try_next_has_answers() -> None:
    """Cluster labs' answers cannot be run here: each says so at its top."""
    for readme in sorted((REPO / "labs").glob("[0-9][0-9]-*/README.md")):
        if "\n## Try next" not in readme.read_text():
            continue
        answers = readme.with_name("answers.md")
        assert answers.is_file(), f"{readme.parent.name}: README has Try next, no answers.md"
        if readme.parent not in LOCAL_LABS:
            head = answers.read_text()[:800]
            assert "written from the docs, not captured on a cluster" in head, answers
