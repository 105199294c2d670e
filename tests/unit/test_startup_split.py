"""labkit's start-up split (results.json's python_s, tf_import_s, connect_s; `make bench`),
measured in real interpreters with a stand-in `tensorflow` package that takes a known time to
import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.labs import REPO

IMPORT_S = 0.4
REPORT = ("from labkit import report; import json, sys; p = report.Progress(); p.update(1); "
          "print(json.dumps({**p.timings(), 'loader': type(sys.modules['tensorflow'].__loader__)"
          ".__name__, 'clocks': [type(f).__name__ for f in sys.meta_path]}))")


@pytest.fixture
def slow_tensorflow(tmp_path: Path) -> Path:
    package = tmp_path / "tensorflow"
    package.mkdir()
    (package / "__init__.py").write_text(
        f"import time\ntime.sleep({IMPORT_S})\nfrom tensorflow import sub\n")
    (package / "sub.py").write_text(f"import time\ntime.sleep({IMPORT_S})\n")
    return tmp_path


def timings(path: Path, code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code + "; " + REPORT], capture_output=True,
                          text=True, timeout=60, check=True,
                          env={"PYTHONPATH": f"{REPO / 'labs'}:{path}"})
    return json.loads(done.stdout.splitlines()[-1])  # after the PROGRESS line


def test_the_tensorflow_import_is_timed_with_its_submodules(slow_tensorflow: Path) -> None:
    got = timings(slow_tensorflow, "import labkit; import tensorflow")
    assert 2 * IMPORT_S <= got["tf_import_s"] < 2 * IMPORT_S + 1
    assert got["connect_s"] == round(got["startup_s"] - got["tf_import_s"], 3)
    assert 0 <= got["connect_s"] < 1
    # The module keeps its own loader, and the clock is gone from the import system.
    assert got["loader"] == "SourceFileLoader" and "_ImportClock" not in got["clocks"]


def test_tensorflow_imported_before_labkit_counts_zero(slow_tensorflow: Path) -> None:
    got = timings(slow_tensorflow, "import tensorflow; import labkit")
    assert got["tf_import_s"] == 0.0 and "_ImportClock" not in got["clocks"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/stat is Linux's")
def test_python_start_is_the_process_age_at_labkits_import(slow_tensorflow: Path) -> None:
    quick = timings(slow_tensorflow, "import labkit; import tensorflow")
    late = timings(slow_tensorflow,
                   "import time; time.sleep(0.7); import labkit; import tensorflow")
    assert 0 < quick["python_s"] < 0.7 <= late["python_s"] < 0.7 + 2
