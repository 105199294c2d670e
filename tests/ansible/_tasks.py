"""The tasks of a role's task file, read as YAML: blocks walked, with the vars around each task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def tasks_with_vars(path: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every task of a task file (blocks and their rescue/always included, at any depth) with
    the vars of the blocks around it."""
    out = []

    def walk(items: list[dict[str, Any]], inherited: dict[str, Any]) -> None:
        for task in items:
            out.append((task, inherited))
            for part in ("block", "rescue", "always"):
                walk(task.get(part, []), {**inherited, **task.get("vars", {})})

    walk(yaml.safe_load(path.read_text()) or [], {})
    return out


def tasks(path: Path) -> list[dict[str, Any]]:
    return [task for task, _ in tasks_with_vars(path)]
