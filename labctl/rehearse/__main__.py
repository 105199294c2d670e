"""`make rehearse` (python -m labctl.rehearse): prove the configured cluster end to end.

Exit 0: go. 1: no-go (the table says which step failed; the cluster is kept). 2: this host
cannot run it (nothing booted).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from labctl.errors import UsageError
from labctl.rehearse import plan, preflight, report, runner


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rehearse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the cluster up at the end")
    parser.add_argument(
        "--disruptive",
        action="store_true",
        help="make verify stops services on purpose (INFRA_DISRUPTIVE=1)",
    )
    parser.add_argument(
        "--project",
        type=Path,
        default=plan.ROOT,
        help="the directory with the Vagrantfile to rehearse (default: this kit)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where each rehearsal's directory goes (default: PROJECT/rehearsal)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    args.project = args.project.resolve()
    try:
        cluster = plan.read_cluster(cwd=args.project)
    except UsageError as error:
        print(f"rehearse: {error}", file=sys.stderr)
        return 2
    if problems := preflight.problems(cluster):
        for problem in problems:
            print(f"rehearse: {problem}", file=sys.stderr)
        return 2
    out = (args.out or args.project / "rehearsal") / time.strftime("%Y%m%d-%H%M%S")
    steps = plan.steps(
        cluster,
        args.project,
        keep=args.keep,
        disruptive=args.disruptive,
        labctl=str(Path(sys.executable).with_name("labctl")),
        room=out / "classroom",
    )
    plan.write_names(out / "classroom")
    env = {
        # Per-task timestamps: the table's bring-up time per stage comes from them.
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
        "KUBECONFIG": str(args.project / "kubeconfig"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    outcomes = runner.run(steps, out, env, args.project, print)
    up = [o for o in outcomes if o.name == "vagrant up" and o.log]
    stages = report.stage_times((out / up[0].log).read_text()) if up else []
    report.write(out, cluster, outcomes, stages)
    print(f"rehearse: {'GO' if report.go(outcomes) else 'NO-GO'}; table: {out / 'report.md'}")
    if not report.go(outcomes):
        print(
            "rehearse: the cluster is left up for inspection; remove it with: "
            f"(cd {args.project} && vagrant destroy -f)"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
