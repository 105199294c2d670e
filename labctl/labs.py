"""Lab discovery and `lab.toml` validation (labs/README.md is the contract)."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.errors import UsageError
from labctl.states import LabKind, Shutdown
from labctl.tasks import SINGLE, TASK_TYPES, TaskSpec, parse_task

REPO = Path(__file__).resolve().parent.parent
_DIR = re.compile(r"^(\d\d)-[a-z0-9][a-z0-9-]*$")
ArgValue = str | int | float | bool


def labs_dir() -> Path:
    return Path(os.environ.get("LABCTL_LABS_DIR") or REPO / "labs").absolute()


def state_dir() -> Path:
    return Path(os.environ.get("LABCTL_STATE_DIR") or REPO / ".labctl").absolute()


class LabError(UsageError):
    """A lab.toml that breaks the contract."""


@dataclass(frozen=True)
class Count:
    default: int
    min: int
    max: int


@dataclass(frozen=True)
class Lab:
    name: str  # the directory name, e.g. 04-between-graph-async
    path: Path
    title: str
    kind: LabKind
    program: str
    summary: str = ""
    success: str = SINGLE
    shutdown: Shutdown = Shutdown.LAUNCHER
    progress: bool = True
    tasks: dict[str, Count] = field(default_factory=dict)
    args: dict[str, ArgValue] = field(default_factory=dict)
    k8s: dict[str, Any] = field(default_factory=dict)  # the [k8s] table, read by labctl.k8s
    preload: tuple[str, ...] = ()  # modules the local target imports once for every task

    @property
    def number(self) -> int:
        return int(self.name[:2])

    @property
    def success_task(self) -> TaskSpec:
        return parse_task(self.success) if self.tasks else TaskSpec(SINGLE, 0)


def _require(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise LabError(f"{where}: `{key}` must be a {kind.__name__}")
    return value


def _count(value: Any, where: str) -> Count:
    if not isinstance(value, dict) or set(value) != {"default", "min", "max"}:
        raise LabError(f"{where}: expected {{ default = N, min = N, max = N }}")
    if not all(type(v) is int for v in value.values()):
        raise LabError(f"{where}: default, min and max must be integers")
    count = Count(value["default"], value["min"], value["max"])
    if not 0 <= count.min <= count.default <= count.max:
        raise LabError(f"{where}: needs 0 <= min <= default <= max")
    return count


def load_lab(path: Path) -> Lab:
    """Read and validate `path/lab.toml`; LabError names the file and the field at fault."""
    where = str(path / "lab.toml")
    try:
        data = tomllib.loads((path / "lab.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LabError(f"{where}: {exc}") from None
    unknown = set(data) - {"title", "kind", "program", "summary", "success", "shutdown",
                           "progress", "tasks", "args", "k8s", "preload"}
    if unknown:
        raise LabError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    kind = _require(data, "kind", str, where)
    if kind not in tuple(LabKind):
        raise LabError(f"{where}: kind must be one of {', '.join(LabKind)}")
    shutdown = data.get("shutdown", Shutdown.LAUNCHER)
    if shutdown not in tuple(Shutdown):
        raise LabError(f"{where}: shutdown must be one of {', '.join(Shutdown)}")
    tasks_table = data.get("tasks", {})
    if not isinstance(tasks_table, dict):
        raise LabError(f"{where}: [tasks] must be a table")
    bad_types = set(tasks_table) - set(TASK_TYPES)
    if bad_types:
        raise LabError(f"{where}: unknown task type(s) {', '.join(sorted(bad_types))}")
    tasks = {t: _count(v, f"{where} [tasks] {t}") for t, v in tasks_table.items()}
    args = data.get("args", {})
    if not isinstance(args, dict) or not all(
        isinstance(v, str | int | float) for v in args.values()
    ):
        raise LabError(f"{where}: [args] must map option names to strings, numbers or booleans")
    k8s = data.get("k8s", {})
    if not isinstance(k8s, dict):
        raise LabError(f"{where}: [k8s] must be a table")
    preload = data.get("preload", [])
    if not isinstance(preload, list) or not all(
        isinstance(m, str) and all(part.isidentifier() for part in m.split(".")) for m in preload
    ):
        raise LabError(f'{where}: preload must be a list of module names, e.g. ["tensorflow"]')
    lab = Lab(
        name=path.name,
        path=path,
        title=_require(data, "title", str, where),
        kind=LabKind(kind),
        program=_require(data, "program", str, where),
        summary=data.get("summary", ""),
        success=data.get("success", SINGLE),
        shutdown=Shutdown(shutdown),
        progress=data.get("progress", True) is True,
        tasks=tasks,
        args=args,
        k8s=k8s,
        preload=tuple(preload),
    )
    if not (path / lab.program).is_file():
        raise LabError(f"{where}: program {lab.program!r} does not exist")
    if tasks:
        success = parse_task(lab.success) if ":" in lab.success else None
        if success is None or success.type not in tasks or success.index >= tasks[success.type].min:
            raise LabError(f"{where}: success must name a task that always exists, e.g. worker:0")
    return lab


def lab_dirs() -> list[Path]:
    """Every `NN-name/` directory holding a lab.toml, in number order."""
    root = labs_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if _DIR.match(p.name) and (p / "lab.toml").is_file())


def resolve(ident: str) -> Path:
    """A lab directory from `04`, `4`, `04-between-graph-async` or `between-graph-async`."""
    dirs = lab_dirs()
    for path in dirs:
        number, _, rest = path.name.partition("-")
        if ident in (path.name, rest) or (ident.isdigit() and int(ident) == int(number)):
            return path
    valid = ", ".join(p.name for p in dirs) or f"none found in {labs_dir()}"
    raise UsageError(f"unknown lab {ident!r}; valid labs: {valid}")
