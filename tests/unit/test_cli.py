"""CLI parsing in-process: defaults, option types, and one-line errors with exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from labctl import cli


def parse(*args: str):
    return cli.build_parser().parse_args(args)


def test_run_defaults() -> None:
    args = parse("run", "04")
    assert (args.lab, args.target, args.stall_timeout, args.max_restarts) == ("04", "local",
                                                                            60.0, 3)
    assert args.workers is None and args.kill == [] and not args.check and not args.quiet


def test_run_options() -> None:
    args = parse("run", "4", "--workers", "3", "--ps", "2", "--steps", "50", "--dataset",
                 "mnist", "--kill", "worker:1@3", "--kill", "ps:0@9", "--stall-timeout", "2.5",
                 "--max-restarts", "0", "--check", "-q")
    assert (args.workers, args.ps, args.steps, args.dataset) == (3, 2, 50, "mnist")
    assert args.kill == ["worker:1@3", "ps:0@9"] and args.stall_timeout == 2.5
    assert args.max_restarts == 0 and args.check and args.quiet


def test_launch_keeps_the_program_arguments() -> None:
    args = parse("launch", "--ps", "1", "--workers", "2", "--chief", "--", "python", "x.py",
                 "--steps", "5", "-q")
    assert (args.ps, args.workers, args.chief, args.evaluator) == (1, 2, True, False)
    assert args.argv[-4:] == ["x.py", "--steps", "5", "-q"] and not args.quiet


def test_launch_python_means_this_interpreter(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "x.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert cli._launch_argv(["--", "python", "x.py", "-v"]) == [sys.executable, "x.py", "-v"]
    assert cli._launch_argv(["python3", "-m", "http.server"])[1:] == ["-m", "http.server"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "4", "--workers", "x"], "argument --workers: expected a number, got 'x'"),
        (["run", "4", "--max-restarts", "-1"], "must not be negative"),
        (["run", "4", "--stall-timeout", "soon"], "expected seconds, got 'soon'"),
        (["run", "4", "--target", "moon"], "argument --target: invalid choice"),
        (["launch", "--evaluator=yes"], "ignored explicit argument"),
        (["run", "9", "--target", "k8s", "--deadline", "0"],
         "argument --deadline: '0' is not a whole number of seconds > 0"),
    ],
)
def test_parse_errors_are_one_line_exit_2(capsys, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as info:
        parse(*argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "--help" in err


def test_usage_errors_return_2_with_one_line(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LABCTL_LABS_DIR", str(tmp_path))
    assert cli.main(["run", "04"]) == 2
    assert capsys.readouterr().err == (
        f"labctl: error: unknown lab '04'; valid labs: none found in {tmp_path}\n")


def test_cluster_options_on_a_local_run_are_refused_not_ignored(capsys) -> None:
    assert cli.main(["run", "01", "--namespace", "alice", "--deadline", "60"]) == 2
    assert capsys.readouterr().err == (
        "labctl: error: --target local does not use --namespace (k8s), --deadline (k8s): drop "
        "them, or pick a target that uses them\n")
    # The docker target takes --image only; it used to run on, ignoring --kubeconfig.
    assert cli.main(["run", "01", "--target", "docker", "--kubeconfig", "kc"]) == 2
    assert capsys.readouterr().err.startswith("labctl: error: --target docker does not use "
                                              "--kubeconfig (k8s)")


def test_native_windows_is_refused_in_one_line(capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    assert cli.main(["list"]) == 2
    assert capsys.readouterr().err == (
        "labctl: error: Windows x86_64: labctl needs POSIX processes and signals: use WSL2 with "
        "Ubuntu (README: Which laptop?)\n")


@pytest.mark.parametrize(("where", "reason"), [
    (("linux", "x86_64", "3.11"), None),
    (("linux", "aarch64", "3.13"), None),
    (("darwin", "arm64", "3.12"), None),
    (("darwin", "x86_64", "3.11"), "macOS Intel: TensorFlow 2.21 has no macOS x86_64 wheel"),
    (("linux", "x86_64", "3.14"), "Python 3.14: TensorFlow 2.21 has wheels for Python 3.11, "
                                  "3.12, 3.13; run `make labs PYTHON=python3.13`"),
    (("freebsd14", "amd64", "3.11"), "freebsd14 amd64 is not a supported laptop"),
])
def test_which_laptops_run_the_local_labs(where: tuple[str, str, str], reason: str | None) -> None:
    from labctl import platforms

    found = platforms.problem(*where)
    assert (found is None) if reason is None else (found or "").startswith(reason)


def test_list_does_not_import_tensorflow() -> None:
    import subprocess

    code = "import sys, labctl.cli; labctl.cli.main(['list']); print('tensorflow' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=30)
    assert proc.stdout.strip().endswith("False")


@pytest.mark.parametrize(("status", "code"), [("succeeded", 0), ("skipped", 3),
                                              ("failed", 1), ("interrupted", 130)])
def test_report_exit_codes(tmp_path: Path, capsys, status: str, code: int) -> None:
    from labctl import rundir
    from labctl.job import Outcome

    run = rundir.RunDir(tmp_path)
    assert cli.report(run, Outcome(status, "no GPU capacity", None, [], 0, 1.0)) == code
    if status == "skipped":
        assert "skipped: no GPU capacity" in capsys.readouterr().out
