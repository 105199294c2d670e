"""The stage names `make verify STAGES=…` (`--stages`) accepts, read from the playbooks.

Every play that site.yml imports carries its stage's tag and its role's tag (playbooks/*.yml), so
both kinds of name are accepted: a role (`nfs_server`) selects itself, a stage (`storage`) selects
every role of its plays. `cluster` selects the whole-cluster checks (test_cluster*.py). Anything
else is an error, never a run that silently checks nothing.
"""

from __future__ import annotations

from pathlib import Path

import yaml

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
CLUSTER = "cluster"


def vocabulary(playbooks: Path = PLAYBOOKS) -> dict[str, frozenset[str]]:
    """Each accepted name -> the roles (test modules) it selects."""
    names: dict[str, set[str]] = {CLUSTER: {CLUSTER}}
    for entry in yaml.safe_load((playbooks / "site.yml").read_text()):
        for play in yaml.safe_load(
            (playbooks / entry["ansible.builtin.import_playbook"]).read_text()
        ):
            roles = [r["role"] if isinstance(r, dict) else r for r in play.get("roles", [])]
            for role in roles:
                names.setdefault(role, set()).add(role)
            for tag in play.get("tags", []):
                if tag != "always" and roles:
                    names.setdefault(tag, set()).update(roles)
    return {name: frozenset(roles) for name, roles in names.items()}


def resolve(option: str, playbooks: Path = PLAYBOOKS) -> frozenset[str] | None:
    """The roles a comma-separated --stages value selects; None (every stage) when empty.

    Raises ValueError with a one-line message naming the unknown names and the valid ones.
    """
    wanted = [name.strip() for name in option.split(",") if name.strip()]
    if not wanted:
        return None
    known = vocabulary(playbooks)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ValueError(
            f"unknown stage(s) {', '.join(unknown)}: use role or stage names from playbooks/ "
            f"({', '.join(sorted(known))})"
        )
    return frozenset().union(*(known[name] for name in wanted))


def module_stage(path: Path) -> str:
    """The stage a tests/infra module checks: test_<role>.py, or test_cluster*.py for cluster."""
    stem = path.stem.removeprefix("test_")
    return CLUSTER if stem.startswith(CLUSTER) else stem
