"""The k8s and docker target tests' fixture: a small lab tree and a private state dir (their
conftest.py files import it)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Labs shaped like the real ones, with trivial programs: the logic tests never run them.
FAKE_LABS = {
    "04-fake-async": """
        title = "async"
        kind = "local"
        program = "train.py"
        success = "worker:0"
        shutdown = "done-queue"
        [tasks]
        ps = { default = 1, min = 1, max = 2 }
        worker = { default = 2, min = 1, max = 3 }
        [args]
        steps = 20
        dataset = "digits"
    """,
    "06-fake-strategy": """
        title = "strategy"
        kind = "local"
        program = "train.py"
        success = "chief:0"
        shutdown = "launcher"
        [tasks]
        chief = { default = 1, min = 1, max = 1 }
        ps = { default = 1, min = 1, max = 2 }
        worker = { default = 1, min = 1, max = 2 }
        [args]
        steps = 20
    """,
    "10-fake-gpu": """
        title = "gpu"
        kind = "cluster"
        program = "train.py"
        [args]
        steps = 5
        [k8s]
        name = "gpu"
        gpu = true
    """,
    "11-fake-shared": """
        title = "shared"
        kind = "cluster"
        program = "train.py"
        [args]
        steps = 5
        [k8s]
        name = "train-{run}"
        own_namespace = true
        volume = "models"
    """,
}


@pytest.fixture
def fake_labs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LABCTL_LABS_DIR with the fake labs and a copy of labkit; LABCTL_STATE_DIR private."""
    root = tmp_path / "labs"
    for name, toml in FAKE_LABS.items():
        (root / name).mkdir(parents=True)
        (root / name / "lab.toml").write_text(textwrap.dedent(toml))
        (root / name / "train.py").write_text("print('PROGRESS step=1')\n")
    shutil.copytree(REPO / "labs" / "labkit", root / "labkit",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("LABCTL_LABS_DIR", str(root))
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    return root
