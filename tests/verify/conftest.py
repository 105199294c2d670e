"""Unit tests of what `make verify` decides (tests/infra), run by the plain suite: its helper
modules are importable here, its cluster checks are not collected."""

from __future__ import annotations

import sys
from pathlib import Path

INFRA = Path(__file__).resolve().parents[1] / "infra"
sys.path.insert(0, str(INFRA))
