"""The `labctl` command line. Imports stay light: no TensorFlow; heavy modules load per command."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from labctl import classroom_cli, display, doctor, labs, plan, platforms, preload, rundir
from labctl import targets as registry
from labctl.checks import EXIT_SKIP, VERDICT_EXIT, run_check
from labctl.errors import UsageError
from labctl.job import JobSpec, Outcome
from labctl.k8s import targets
from labctl.local import execute
from labctl.record import RunRecord
from labctl.restart import RestartPolicy
from labctl.states import LabKind, RunStatus, Shutdown, Target
from labctl.tasks import TaskSpec, build_tasks, parse_task

LAUNCH = "launch"  # the run group of `labctl launch`
DEFAULT_STALL_S = 60.0
DEFAULT_RESTARTS = 3
PLAIN_HELP = ("no live progress bar, colour or redraws: plain lines, for screen readers and logs "
              "(NO_COLOR set does the same)")


class Parser(argparse.ArgumentParser):
    """argparse, but errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1, got 0")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _lab_options(p: argparse.ArgumentParser) -> None:
    """What a lab run may change: task counts and the program's [args]."""
    p.add_argument("--workers", type=_count, metavar="N", help="number of workers")
    p.add_argument("--ps", type=_count, metavar="N", help="number of parameter servers")
    p.add_argument("--steps", type=_positive_int, metavar="N", help="training steps")
    p.add_argument("--dataset", choices=("digits", "mnist"), help="training data")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="another of the lab's options (lab.toml [args]), e.g. rows=262144; "
                        "repeatable")


def _job_options(p: argparse.ArgumentParser, stall_default: float | None) -> None:
    """Lifecycle options shared by `run` and `launch`."""
    p.add_argument("--kill", action="append", default=[], metavar="TASK@STEP",
                   help="SIGKILL TASK once the global step passes STEP (e.g. worker:1@300); "
                        "repeatable")
    p.add_argument("--stall-timeout", type=_seconds, default=stall_default, metavar="S",
                   help="fail when the global step does not advance for S seconds; a lab that "
                        "prints no progress must end within S seconds"
                        + (f" (default {stall_default:g})" if stall_default else ""))
    p.add_argument("--max-restarts", type=_count, default=DEFAULT_RESTARTS, metavar="N",
                   help=f"restarts per failed task, with back-off (default {DEFAULT_RESTARTS})")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="show only progress and the verdict, not the tasks' output")


def build_parser() -> Parser:
    parser = Parser(prog="labctl", description="Run the distributed TensorFlow labs.")
    parser.add_argument("--plain", action="store_true", help=PLAIN_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="list the labs with their last result")

    p = sub.add_parser("run", help="run a lab (or `all` local labs) on a target")
    p.add_argument("lab", metavar="LAB", help="lab number or name (04, 4, 04-...), or `all`")
    _lab_options(p)
    p.add_argument("--check", action="store_true", help="run the lab's check after the run")
    p.add_argument("--target", choices=tuple(Target), default=Target.LOCAL,
                   help="where the tasks run (default local)")
    targets.add_options(p)
    p.add_argument("--no-preload", action="store_true",
                   help="local: start every task as a new Python process instead of forking it "
                        "from one that has imported TensorFlow already (also LABCTL_PRELOAD=0)")
    _job_options(p, DEFAULT_STALL_S)

    p = sub.add_parser("render", help="print the Kubernetes manifests a run would create")
    p.add_argument("lab", metavar="LAB", help="lab number or name")
    _lab_options(p)
    p.add_argument("--target", choices=("k8s",), default="k8s", help="only k8s")
    targets.add_options(p)

    p = sub.add_parser("check", help="check a lab's last run")
    p.add_argument("lab", metavar="LAB")
    p.add_argument("--run", metavar="RUN_ID", help="a run other than the latest")

    p = sub.add_parser("logs", help="print a run's task logs")
    p.add_argument("lab", metavar="LAB", help=f"lab number or name, or `{LAUNCH}`")
    p.add_argument("--task", metavar="TASK", help="only this task, e.g. worker:1")
    p.add_argument("--run", metavar="RUN_ID", help="a run other than the latest")

    p = sub.add_parser("clean", help="remove runs (of one lab, or all) with what they left")
    p.add_argument("lab", nargs="?", metavar="LAB", help=f"lab number or name, or `{LAUNCH}`")
    p.add_argument("--all", action="store_true",
                   help="also every labctl object on the cluster, whoever made it (the "
                        "instructor's reset; uses --kubeconfig or the default one)")
    p.add_argument("--kubeconfig", metavar="PATH", help="with --all: the cluster to sweep")

    p = sub.add_parser("tensorboard", help="serve a run's output with TensorBoard")
    p.add_argument("lab", metavar="LAB", help=f"lab number or name, or `{LAUNCH}`")
    p.add_argument("--run", metavar="RUN_ID", help="a run other than the latest")
    p.add_argument("--port", type=_positive_int, default=6006, help="port (default 6006)")

    p = sub.add_parser(
        LAUNCH,
        help="run any TF_CONFIG program as a local cluster",
        usage="labctl launch [--ps N] [--workers N] [--chief] [--evaluator] [options] "
              "-- COMMAND [ARGS...]",
    )
    p.add_argument("--ps", type=_count, default=0, metavar="N")
    p.add_argument("--workers", type=_count, default=1, metavar="N")
    p.add_argument("--chief", action="store_true", help="add a chief (it then decides success)")
    p.add_argument("--evaluator", action="store_true", help="add an evaluator")
    p.add_argument("--timeout", type=_seconds, metavar="S", help="fail after S seconds")
    _job_options(p, None)
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="the program every task runs, after --")

    classroom_cli.add_parser(sub)
    doctor.add_parser(sub)
    for command in sub.choices.values():  # `labctl run 04 --plain` too; absent, it changes nothing
        command.add_argument("--plain", action="store_true", default=argparse.SUPPRESS,
                             help=PLAIN_HELP)
    return parser


# --- commands ------------------------------------------------------------------------------------
def _group(ident: str) -> str:
    """A run group: a lab's directory name, or `launch`."""
    return LAUNCH if ident == LAUNCH else labs.resolve(ident).name


def cmd_list(_: argparse.Namespace) -> int:
    from rich.table import Table

    table = Table("#", "lab", "title", "kind", "last result", box=None, pad_edge=False)
    for path in labs.lab_dirs():
        try:
            lab = labs.load_lab(path)
        except labs.LabError as exc:
            table.add_row(path.name[:2], path.name, f"[red]invalid: {exc}", "", "")
            continue
        table.add_row(f"{lab.number:02d}", lab.name, lab.title, lab.kind, last_result(lab.name))
    console = display.console()
    if not console.is_terminal:  # pipes and CI: one row per line, never wrapped
        console.width = 200
    console.print(table)
    on_cluster = cluster_runs()
    if on_cluster:
        console.print("\nruns whose objects stay on the cluster until `labctl clean LAB`:")
        for run, rec in on_cluster:
            console.print(f"  {rec.lab} {run.run_id}: namespace {rec.namespace} "
                          f"({rec.api_server or 'unknown API server'})")
    return 0


def cluster_runs() -> list[tuple[rundir.RunDir, RunRecord]]:
    """k8s runs still recorded here: their Jobs, volume and namespace stay on the cluster
    (finished Jobs for inspection, results on the volume) until `labctl clean`."""
    found = []
    for path in sorted((labs.state_dir() / "runs").glob("*/*/run.json")):
        run = rundir.RunDir(path.parent)
        rec = run.record()
        if rec and rec.target == Target.K8S and rec.created:
            found.append((run, rec))
    return found


def last_result(group: str) -> str:
    run = rundir.latest(group)
    if run is None:
        return "-"
    rec, check = run.record(), run.read("check.json")
    status = (rec and rec.status) or "?"
    when = str((rec and (rec.finished or rec.started)) or "")[:16].replace("T", " ")
    if status == RunStatus.RUNNING and not rundir.is_active(run):
        status = "aborted"
    if check and status in (RunStatus.SUCCEEDED, RunStatus.SKIPPED):
        status = "SKIP" if check.get("skipped") else "PASS" if check.get("passed") else "FAIL"
    return f"{status} {when}".strip()


def _run_options(args: argparse.Namespace) -> dict[str, object]:
    return {
        "workers": args.workers, "ps": args.ps, "steps": args.steps, "dataset": args.dataset,
        "set": args.set,
        "kill": args.kill, "stall_timeout": args.stall_timeout,
        "max_restarts": args.max_restarts, "target": args.target,
        "namespace": getattr(args, "namespace", None), "image": getattr(args, "image", None),
        "cpu_request": getattr(args, "cpu_request", None),
        "cpu_limit": getattr(args, "cpu_limit", None),
    }


def cmd_run(args: argparse.Namespace) -> int:
    if args.lab == "all":
        return run_all(args)
    lab = labs.load_lab(labs.resolve(args.lab))
    return run_lab(lab, args)[0]


def run_lab(lab: labs.Lab, args: argparse.Namespace) -> tuple[int, str, str, float]:
    """Run one lab; (exit code, run status, check verdict, wall time)."""
    if lab.kind == LabKind.CLUSTER and args.target == Target.LOCAL:
        raise UsageError(f"lab {lab.name} needs a Kubernetes cluster: run it with --target k8s")
    if args.check and not (lab.path / "check.py").is_file():
        raise UsageError(f"lab {lab.name} has no check.py: run it without --check")
    registry.refuse_unused(args.target, args)
    lab_plan = plan.plan_lab(
        lab,
        {"worker": args.workers, "ps": args.ps},
        plan.arg_overrides(lab, args.steps, args.dataset, args.set),
        args.kill,
    )

    steps = lab_plan.args.get("steps")
    spec = JobSpec(
        title=lab.name,
        tasks=lab_plan.tasks,
        success=lab.success_task,
        shutdown=lab.shutdown,
        policy=RestartPolicy(max_restarts=args.max_restarts),
        stall_timeout_s=args.stall_timeout if lab.progress else None,
        timeout_s=None if lab.progress else args.stall_timeout,
        kills=lab_plan.kills,
        total_steps=steps if type(steps) is int else None,
    )
    record = RunRecord(lab.name, options=_run_options(args),
                       counts=lab_plan.counts, args=lab_plan.args, success=spec.success.name,
                       shutdown=lab.shutdown)
    run, outcome = registry.get(args.target).run(lab, lab_plan, spec, record, args)
    code = report(run, outcome)
    verdict = "-"
    if args.check and (code == 0 or outcome.status == RunStatus.SKIPPED):
        verdict, code = _check_and_print(lab, run)
    return code, outcome.status, verdict, outcome.wall_time_s


def shown(path: Path) -> str:
    """A path relative to the working directory when it lies below it."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def report(run: rundir.RunDir, outcome: Outcome) -> int:
    where = shown(run.path)
    if outcome.status == RunStatus.SUCCEEDED:
        step = f", global step {outcome.global_step}" if outcome.global_step else ""
        print(f"labctl: succeeded in {outcome.wall_time_s:.1f} s{step}; run dir {where}")
        return 0
    if outcome.status == RunStatus.SKIPPED:
        # e.g. lab 10 on a cluster without GPU capacity: nothing failed, and nothing passed.
        print(f"labctl: skipped: {outcome.reason}")
        return EXIT_SKIP
    print(f"labctl: {outcome.status}: {outcome.reason}", file=sys.stderr)
    if outcome.failed_task:
        print(f"labctl: last lines of {outcome.failed_task}:", file=sys.stderr)
        for line in outcome.tail:
            print(f"    {line}", file=sys.stderr)
    print(f"labctl: logs in {where}/logs", file=sys.stderr)
    return 130 if outcome.status == RunStatus.INTERRUPTED else 1


def _check_and_print(lab: labs.Lab, run: rundir.RunDir) -> tuple[str, int]:
    verdict = run_check(lab, run)
    print(verdict.message)
    if verdict.hint and not verdict.passed:
        print(f"hint: {verdict.hint}")
    return verdict.word, VERDICT_EXIT[verdict.word]


def run_all(args: argparse.Namespace) -> int:
    for flag in ("workers", "ps", "steps", "set"):
        if getattr(args, flag) not in (None, []):
            raise UsageError(f"--{flag} applies to one lab, not to `run all`")
    if args.kill:
        raise UsageError("--kill applies to one lab, not to `run all`")
    if args.target != Target.LOCAL:
        raise UsageError("`run all` runs the local labs; run cluster labs one by one")
    selected = [labs.load_lab(p) for p in labs.lab_dirs()]
    selected = [lab for lab in selected if lab.kind == LabKind.LOCAL]
    if not selected:
        raise UsageError(f"no local labs found in {labs.labs_dir()}")
    started = time.monotonic()
    rows = []
    for lab in selected:
        print(f"==> {lab.name}: {lab.title}", flush=True)
        dataset = args.dataset if "dataset" in lab.args else None
        code, status, verdict, wall = run_lab(lab, argparse.Namespace(**{**vars(args),
                                                                        "dataset": dataset}))
        if code == 130:
            return code
        rows.append((lab.name, status, verdict, wall, code))
    print(f"\n{'lab':<32} {'run':<10} {'check':<6} {'time':>7}")
    for name, status, verdict, wall, _ in rows:
        print(f"{name:<32} {status:<10} {verdict:<6} {wall:>6.1f}s")
    failed = [r[0] for r in rows if r[4] not in (0, EXIT_SKIP)]
    skipped = [r[0] for r in rows if r[4] == EXIT_SKIP]
    total = time.monotonic() - started
    print(f"{len(rows) - len(failed) - len(skipped)}/{len(rows)} labs passed in {total:.0f} s"
          + (f"; skipped: {', '.join(skipped)}" if skipped else "")
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else EXIT_SKIP if skipped else 0


def cmd_check(args: argparse.Namespace) -> int:
    lab = labs.load_lab(labs.resolve(args.lab))
    target = " --target k8s" if lab.kind == LabKind.CLUSTER else ""
    run = rundir.find(lab.name, args.run, start=f"labctl run {lab.name[:2]}{target}")
    if rundir.is_active(run):
        raise UsageError(f"run {run.run_id} of {lab.name} is still running: check it when done")
    word, code = _check_and_print(lab, run)
    targets.record_verdict(lab.name, run, word)
    return code


def cmd_logs(args: argparse.Namespace) -> int:
    run = rundir.find(_group(args.lab), args.run)
    if args.task:
        path = run.log(parse_task(args.task))
        if not path.is_file():
            have = ", ".join(p.stem for p in sorted(run.logs.glob("*.log"))) or "none"
            raise UsageError(f"no log for {args.task} in run {run.run_id} (logs: {have})")
        sys.stdout.write(path.read_text(errors="replace"))
        return 0
    for path in sorted(run.logs.glob("*.log")):
        name = path.stem.replace("-", ":")
        for line in path.read_text(errors="replace").splitlines():
            print(f"{name} | {line}")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    if args.all and args.lab:
        raise UsageError("clean --all removes every run of every lab: drop LAB, or drop --all")
    if args.kubeconfig and not args.all:
        raise UsageError("clean --kubeconfig goes with --all (a run knows its own cluster)")
    group = _group(args.lab) if args.lab else None
    active = rundir.active_runs(group)
    if active:
        names = ", ".join(f"{r.path.parent.name}/{r.run_id}" for r in active)
        raise UsageError(f"a run is active ({names}): wait for it or stop it, then clean")
    target = rundir.runs_root(group) if group else labs.state_dir() / "runs"
    runs = [rundir.RunDir(p.parent) for p in target.rglob("run.json")] if target.exists() else []
    for run in runs:  # containers or cluster objects a docker/k8s run left behind
        for removed in registry.of_run(run).clean(run):
            print(f"labctl: removed {removed}")
    left = rundir.reap_leftovers()
    if left:
        print(f"labctl: killed {len(left)} process(es) left by aborted runs")
    shutil.rmtree(target, ignore_errors=True)
    print(f"labctl: removed {len(runs)} run(s) from {shown(target)}")
    stopped = preload.stop_all() if group is None else []
    if stopped:
        print(f"labctl: stopped {len(stopped)} pre-imported interpreter(s) (the next run starts "
              "one again)")
    swept = targets.sweep(args.kubeconfig) if args.all else None
    if swept is not None:
        print(f"labctl: removed {len(swept)} labctl object(s) left on the cluster"
              + (f": {', '.join(swept)}" if swept else ""))
    return 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    run = rundir.find(_group(args.lab), args.run)
    found = Path(sys.executable).parent / "tensorboard"
    exe = str(found) if found.is_file() else shutil.which("tensorboard")
    if exe is None:
        raise UsageError("tensorboard is not installed (TensorFlow 2.21 does not bring it): "
                         f"{Path(sys.executable).parent / 'pip'} install tensorboard")
    argv = [exe, "--logdir", str(run.output), "--host", "127.0.0.1", "--port", str(args.port)]
    print(f"labctl: serving {shown(run.output)} on http://127.0.0.1:{args.port}/")
    sys.stdout.flush()
    os.execv(exe, argv)


def _launch_argv(argv: Sequence[str]) -> list[str]:
    """The user's command, with a bare `python` meaning this venv's interpreter."""
    command = list(argv[1:] if argv[:1] == ["--"] else argv)
    if not command:
        raise UsageError("launch needs a command after --, e.g. "
                         "`labctl launch --workers 2 -- python train.py`")
    if command[0] in ("python", "python3"):
        command[0] = sys.executable
    exe = command[0]
    if shutil.which(exe) is None:
        raise UsageError(f"launch: command not found: {exe}")
    if Path(exe).name.startswith("python"):
        script = next((a for a in command[1:] if not a.startswith("-")), None)
        if command[1:2] not in (["-m"], ["-c"]) and (script is None or not Path(script).is_file()):
            raise UsageError(f"launch: script not found: {script or '(none given)'} "
                             f"(relative to {Path.cwd()})")
    return command


def cmd_launch(args: argparse.Namespace) -> int:
    command = _launch_argv(args.argv)
    if args.workers == 0 and not args.chief:
        raise UsageError("launch needs --workers 1 or more, or --chief")
    counts = {"chief": int(args.chief), "ps": args.ps, "worker": args.workers,
              "evaluator": int(args.evaluator)}
    tasks = build_tasks({t: n for t, n in counts.items() if n})
    spec = JobSpec(
        title=Path(command[1] if len(command) > 1 else command[0]).name,
        tasks=tasks,
        success=TaskSpec("chief", 0) if args.chief else TaskSpec("worker", 0),
        shutdown=Shutdown.LAUNCHER,
        policy=RestartPolicy(max_restarts=args.max_restarts),
        stall_timeout_s=args.stall_timeout,
        timeout_s=args.timeout,
        kills=plan.resolve_kills(args.kill, tasks),
    )
    record = RunRecord(LAUNCH, command=command, counts=counts, success=spec.success.name,
                       options={"kill": args.kill, "stall_timeout": args.stall_timeout,
                                "timeout": args.timeout, "max_restarts": args.max_restarts})
    run, outcome = execute(LAUNCH, spec, record, lambda _t, _r: command, Path.cwd(), args.quiet)
    return report(run, outcome)


COMMANDS = {
    "list": cmd_list, "run": cmd_run, "check": cmd_check, "logs": cmd_logs,
    "clean": cmd_clean, "tensorboard": cmd_tensorboard, LAUNCH: cmd_launch,
    "render": targets.cmd_render, "class": classroom_cli.cmd_class,
    "doctor": doctor.cmd_doctor,
}


def main(argv: Sequence[str] | None = None) -> int:
    if sys.platform == "win32":  # no POSIX process groups or signals: nothing would work
        print(f"labctl: error: {platforms.problem('win32', 'AMD64')}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    display.ask_plain(args.plain)
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"labctl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("labctl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `labctl logs 04 | head`
        sys.stderr.close()
        return 0
