"""`labctl doctor`: is this machine ready for the workshop day? One line per check, each with
its fix; `--json` for pasting to the instructor; exit 1 when a check fails (it blocks the day),
0 when every check passed or only warned.

The checks live in `local` (this laptop runs the local labs) and `cluster` (`--cluster`: this
host builds the Vagrant cluster, and the cluster answers); `results` runs and shows them. A check
is a function returning a Result; what it reads from the system goes through small probe
functions beside it, which the tests replace. Imports stay light: `labctl.cli` imports this
package for every command, the checks only when `doctor` runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from labctl.doctor.results import (
    Check,
    Result,
    Row,
    Status,
    document,
    exit_code,
    fail,
    line,
    ok,
    run_checks,
    run_one,
    skip,
    verdict,
    warn,
)
from labctl.errors import UsageError

__all__ = ["Check", "Result", "Row", "Status", "add_parser", "cmd_doctor", "document",
           "exit_code", "fail", "line", "ok", "run_checks", "run_one", "skip", "verdict", "warn"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("doctor", help="is this machine ready for the workshop? one line per "
                                      "check with its fix; exit 1 when one blocks the day")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (for the instructor) instead of lines")
    p.add_argument("--cluster", action="store_true",
                   help="also check this host for the Vagrant cluster, and the cluster itself")
    p.add_argument("--kubeconfig", metavar="PATH",
                   help="with --cluster: the cluster to check (default: as `labctl run "
                        "--target k8s` finds it)")


def cmd_doctor(args: argparse.Namespace) -> int:
    if args.kubeconfig and not args.cluster:
        raise UsageError("doctor --kubeconfig goes with --cluster")
    from labctl.doctor import local

    checks = local.checks()
    if args.cluster:
        from labctl.doctor import cluster

        checks += cluster.checks(args.kubeconfig)
    return run_checks(checks, args.json, args.cluster)
