"""Each lab's check, against real runs in which an attendee made a mistake.

For every local lab: at least two mistakes an attendee could make (an edit of the lab's
program, or an option), each of which the check must FAIL with the reason it names, and correct
variants from the lab's README that must PASS (here, or as test_answers.py runs the lab's
answers.md with --check). The edits are made to a copy of
labs/ (LABCTL_LABS_DIR), and every edit must find its text, so a changed program breaks the
test loudly instead of silently testing nothing. Real TensorFlow over real gRPC.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _labrun import REPO, labctl

pytestmark = [pytest.mark.labs, pytest.mark.slow]

# A mistake TensorFlow itself refuses: the run fails, labctl shows the cause from the task's log,
# and the check refuses the failed run.
FAILED_RUN = "run failed: "

# (lab, {file: [(old, new), ...]}, extra labctl options, the FAIL line's expected start)
MISTAKES = {
    "01 output uses add2": (
        "01", {"graph.py": [('output = tf.add(add1, mul1, name="output")',
                             'output = tf.add(add1, add2, name="output")')]}, [],
        "FAIL: the graph in graph.pbtxt computes output = 10, expected 9"),
    "01 wrong constant": (
        "01", {"graph.py": [('b = tf.constant(2, name="b")', 'b = tf.constant(5, name="b")')]},
        [], "FAIL: the graph in graph.pbtxt computes output = 21, expected 9"),
    "02 constants instead of variables": (
        "02", {"cluster.py": [(f'{v} = tf.Variable({i}, name="{v}")',
                               f'{v} = tf.constant({i}, name="{v}")')
                              for i, v in enumerate("abcd", start=1)]
               + [("    init = tf.compat.v1.global_variables_initializer()\n", ""),
                  ("    sess.run(init)\n", "")]}, [],
        "FAIL: b was pinned to ps:0 but ran on"),
    "02 an op left unpinned": (
        "02", {"cluster.py": [('    with tf.device(on(ps, 0)):\n        a = ',
                               '    if True:\n        a = ')]}, [],
        "FAIL: a is not pinned to a task in graph.pbtxt"),
    "03 towers not on the workers": (
        "03", {"train.py": [("with tf.device(worker.device), tf.name_scope(worker.stem):",
                             "with tf.name_scope(worker.stem):")]}, [],
        "FAIL: worker:0 ran no MatMul"),
    "03 averaging on worker 0 (README)": (
        "03", {"train.py": [("    with tf.device(ps.device):\n        tower_grads",
                             "    with tf.device(workers[0].device):\n        tower_grads")]},
        [], "FAIL: the gradients of the 2 towers were not summed on the ps (AddN ran on "
            "worker:0)"),
    "03 one tower's gradients": (
        "03", {"train.py": [("zip(*(t[3] for t in towers), strict=True)",
                             "zip(*(t[3] for t in towers[:1]), strict=True)")]}, [],
        "FAIL: Adam/update_"),
    "04 too few steps": (
        "04", {}, ["--steps", "20"], "FAIL: the trained weights (checkpoints/model.ckpt-"),
    "04 everything pinned to ps:0": (
        "04", {"train.py": [("with tf1.device(setter):", "with tf1.device('/job:ps/task:0'):")]},
        ["--ps", "2"], "FAIL: Adam updates ran on {'ps:0': 4}; ps tasks without any: ps:1"),
    "05 one replica fewer (README)": (
        "05", {"../04-between-graph-async/train.py": [
            ("replicas_to_aggregate=len(workers),", "replicas_to_aggregate=len(workers) - 1,")]},
        [], "FAIL: each update averages 1 gradient(s) (the accumulators' num_required), but "
            "the run has 2 workers"),
    "05 no SyncReplicasOptimizer": (
        "05", {"lab.toml": [("sync = true\n", "")]}, [],
        "FAIL: the graph has 0 gradient accumulators (expected 4, one per variable) and no "
        "token queue"),
    "06 model outside the strategy's scope": (
        "06", {"train.py": [("    net = model.keras_mlp(ds.features)\n", ""),
                            ("with strategy.scope():  # variables",
                             "net = model.keras_mlp(ds.features)\nwith strategy.scope():  # v")]},
        ["--max-restarts", "0"], FAILED_RUN + "created in scope: None"),
    "06 too few steps": (
        "06", {}, ["--steps", "10"], "FAIL: the trained weights (checkpoints/ckpt-10) reach"),
    "07 only the chief saves (as TF's tutorial does)": (
        "07", {"train.py": [("tf.train.Checkpoint(weights=",
                             "if cfg.task.index == 0:\n    tf.train.Checkpoint(weights="),
                            ("    str(args.output_dir", "        str(args.output_dir")]}, [],
        "FAIL: worker-1 wrote no copy of its weights (checkpoints/worker-1/)"),
    "12 the table not partitioned (TF2)": (
        "12", {"train.py": [("variable_partitioner=tf.distribute.experimental.partitioners."
                             "MinSizePartitioner(\n            min_shard_bytes=MIN_SHARD_BYTES, "
                             "max_shards=args.shards))", ")")]}, [],
        "FAIL: the table (4,194,304 bytes) was saved whole, by one task"),
    "12 every piece on ps:0 (TF1)": (
        "12", {"train.py": [("with tf1.device(setter):", "with tf1.device('/job:ps/task:0'):")]},
        ["--set", "tf1=true"], "FAIL: the table's 4 pieces are held by 1 task(s); with 2 ps "
                               "tasks they should be spread over 2"),
    "13 no restore after a kill": (
        "13", {"train.py": [("checkpoint.restore(tf.train.latest_checkpoint(CHECKPOINTS))", "")]},
        ["--kill", "worker:1@100"], "FAIL: worker:0 started again at step 1"),
    "13 the evaluator stops after one checkpoint": (
        "13", {"train.py": [("        if step >= args.steps:\n            return",
                             "        return")]}, [],
        "FAIL: the evaluator evaluated 1 checkpoint(s)"),
    "07 too few steps": (
        "07", {}, ["--steps", "15"], "FAIL: the trained weights (checkpoints/worker-0/weights)"),
}

# (lab, options): correct runs the lab's README suggests; each must PASS. Those the lab's
# answers.md runs with --check (tests/labs/test_answers.py) are not repeated here: lab 07 with
# three workers, lab 13 with the chief killed.
VARIANTS = {
    "01 variables instead of constants (README)": ("01", {"graph.py": [
        (f'{v} = tf.constant({i}, name="{v}")', f'{v} = tf.Variable({i}, name="{v}")')
        for i, v in enumerate("abcd", start=1)] + [
        ("    session_value = int(sess.run(output))",
         "    sess.run(tf1.global_variables_initializer())\n"
         "    session_value = int(sess.run(output))")]}, []),
    "02 2 ps, 3 workers": ("02", {}, ["--ps", "2", "--workers", "3"]),
    "03 one worker (README)": ("03", {}, ["--workers", "1"]),
    "05 three workers": ("05", {}, ["--workers", "3"]),
    "06 two ps": ("06", {}, ["--ps", "2"]),
    "12 TF1, 4 ps (README)": ("12", {}, ["--ps", "4", "--set", "tf1=true"]),
}


def lab_copy(tmp: Path, lab: str, edits: dict[str, list[tuple[str, str]]]) -> Path:
    """labs/ copied to tmp with the edits made to lab `lab`'s files; each edit must apply."""
    labs = tmp / "labs"
    shutil.copytree(REPO / "labs", labs, ignore=shutil.ignore_patterns("__pycache__"))
    (lab_dir,) = labs.glob(f"{lab}-*")
    for name, changes in edits.items():
        file = (lab_dir / name).resolve()
        text = file.read_text()
        for old, new in changes:
            assert text.count(old) == 1, f"{name} no longer holds {old!r}: update the test"
            text = text.replace(old, new)
        file.write_text(text)
    return labs


def verdict(tmp: Path, lab: str, edits: dict, options: list[str]) -> tuple[int, list[str], str]:
    labs = lab_copy(tmp, lab, edits) if edits else None
    proc = labctl(tmp / "state", "run", lab, "--check", *options, labs=labs)
    output = proc.stdout[-2500:] + proc.stderr[-2500:]
    if proc.returncode == 1 and "labctl: failed: " in proc.stderr:  # then check it by hand
        output += proc.stderr
        proc = labctl(tmp / "state", "check", lab, labs=labs)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("PASS:", "FAIL:", "hint:"))]
    return proc.returncode, lines, output


@pytest.mark.parametrize("name", MISTAKES)
def test_the_check_fails_a_mistake_with_its_cause(tmp_path: Path, name: str) -> None:
    lab, edits, options, reason = MISTAKES[name]
    code, lines, output = verdict(tmp_path, lab, edits, options)
    assert code == 1 and lines[:1], output
    if reason.startswith(FAILED_RUN):  # the cause is in the failing task's last lines
        assert lines[0].startswith("FAIL: the run failed: "), lines
        assert reason.removeprefix(FAILED_RUN) in output, output
    else:
        assert lines[0].startswith(reason), output
    assert len(lines) == 2 and lines[1].startswith("hint: "), lines


@pytest.mark.parametrize("name", VARIANTS)
def test_a_correct_variant_passes(tmp_path: Path, name: str) -> None:
    lab, edits, options = VARIANTS[name]
    code, lines, output = verdict(tmp_path, lab, edits, options)
    assert code == 0 and lines[:1] and lines[0].startswith("PASS: "), output


# --- lab 09: lab 04's program on the cluster. The Jobs cannot run here; the artifacts can. ------
LAB09 = REPO / "labs" / "09-distributed-training-on-kubernetes"
REPLACED = ("----- labctl: pod async-worker-1-b7x2q replaces async-worker-1-k4m9z (the Job "
            "restarted worker:1) -----\nPROGRESS step=520 loss=0.0311\n")


def as_cluster_run(run: Path, dest: Path, *, log: str, ps_status: str = "succeeded") -> Path:
    """A real local run of lab 04, recorded the way a k8s run of lab 09 is."""
    shutil.copytree(run, dest, symlinks=True)
    meta = json.loads((dest / "run.json").read_text())
    for task in meta["tasks"]:
        task["status"] = ps_status if task["type"] == "ps" else "succeeded"
    meta.update(lab=LAB09.name, target="k8s", namespace="tf-09-test", kubeconfig=None)
    (dest / "run.json").write_text(json.dumps(meta))
    (dest / "logs" / "worker-1.log").write_text(log)
    return dest


def check09(run: Path, home: Path) -> list[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(REPO / "labs")}
    proc = subprocess.run([sys.executable, str(LAB09 / "check.py"), str(run)], cwd=home, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    return [f"exit {proc.returncode}", *proc.stdout.splitlines(), *proc.stderr.splitlines()[-3:]]


def test_lab09_check_on_real_training_artifacts(tmp_path: Path) -> None:
    assert labctl(tmp_path / "state", "run", "04").returncode == 0
    assert labctl(tmp_path / "state", "run", "04", "--steps", "20").returncode == 0
    full, short = sorted((tmp_path / "state" / "runs" / "04-between-graph-async").glob("2*"))
    good = check09(as_cluster_run(full, tmp_path / "good", log=REPLACED), tmp_path)
    assert good[:2] == ["exit 0", good[1]] and good[1].startswith(
        "PASS: Kubernetes Jobs succeeded; test accuracy "), good
    # Mistakes: no pod was replaced; the ps never ended; trained too short.
    for dest, kwargs, reason in [
            ("unkilled", {"log": "PROGRESS step=520\n"}, "FAIL: no worker pod was replaced"),
            ("ps-left", {"log": REPLACED, "ps_status": "running"},
             "FAIL: parameter server(s) still running: ps:0"),
    ]:
        out = check09(as_cluster_run(full, tmp_path / dest, **kwargs), tmp_path)
        assert out[0] == "exit 1" and out[1].startswith(reason), out
    out = check09(as_cluster_run(short, tmp_path / "short", log=REPLACED), tmp_path)
    assert out[0] == "exit 1" and out[1].startswith("FAIL: the trained weights"), out
