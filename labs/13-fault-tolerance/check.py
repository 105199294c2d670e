"""Check lab 13: training resumed from its last checkpoint after a lost worker, and the
evaluator followed the checkpoints.

- Trained: the last checkpoint (checkpoints/) is at --steps (the optimizer's step counter),
  and its weights, evaluated here, classify the held-out digits.
- Resumed: the launcher recorded each kill (run.json: the global step it happened at) and
  wrote a marker into the log of every task it restarted. The first step a task reported after
  its restart must come after the last checkpoint of a step before the kill's: a restart from
  step 1 threw away the checkpoint. The checkpoint of the kill's own step may still have been
  in writing (a worker reports a step once its own save is done, not worker 0's), so resuming
  from the one before it is right.
- Evaluated: the evaluator ended by itself, its records (eval/ckpt-N.json) name at least two
  checkpoints, the last at --steps, each with the accuracy this check computes from that
  checkpoint itself, and its TensorBoard event file exists.
"""

import json
import re

from labkit.checkpoint import Checkpoint
from labkit.checks import (
    Run,
    check_accuracy,
    check_steps,
    main,
    mlp_weights,
    require,
    step_of,
    test_accuracy,
)

STEP = "optimizer/_iterations"
# local and docker: "restarting worker:1 (restart 1)"; k8s: "pod NEW replaces OLD"
RESTARTED = re.compile(r"^----- labctl: (restarting \S+ \(restart \d+\)|pod \S+ replaces \S+)")
PROGRESS = re.compile(r"^PROGRESS step=(\d+)")
RESTORE = ("restore the latest checkpoint before training (checkpoint.restore("
           "tf.train.latest_checkpoint(...))) and start the loop at the restored step")
EVALUATOR = ("the evaluator evaluates each new checkpoint (tf.train.checkpoints_iterator) until "
             "the one of the last step: `labctl logs 13 --task evaluator:0`")


def first_steps_after_restarts(run: Run) -> dict[str, int]:
    """{task: the first step it reported after its first restart}, from the launcher's logs."""
    found: dict[str, int] = {}
    for log in sorted((run.path / "logs").glob("worker-*.log")):
        restarted = False
        for line in log.read_text(errors="replace").splitlines():
            if RESTARTED.match(line):
                restarted = True
            elif restarted and (match := PROGRESS.match(line)):
                found[log.stem.replace("-", ":")] = int(match.group(1))
                break
    return found


def check_resume(run: Run, saved: dict[int, Checkpoint]) -> str:
    kills = run.meta.get("kills") or []
    if not kills:
        return ("no task was lost in this run, so nothing resumed: try `labctl run 13 --kill "
                "worker:1@100`")
    killed_at = int(kills[0].get("global_step") or 0)
    # Worker 0 took part in step killed_at, so it had finished every save of an earlier step.
    before = max((step for step in saved if step < killed_at), default=0)
    resumed = first_steps_after_restarts(run)
    require(resumed, f"{kills[0]['task']} was killed at step {killed_at}, but no worker's log "
            "shows a restart followed by training", "run with restarts (the default "
            "--max-restarts) and read `labctl logs 13`")
    if before == 0:
        return (f"{kills[0]['task']} was killed at step {killed_at}, before the first "
                "checkpoint: starting again from step 1 was right")
    lost = {task: step for task, step in resumed.items() if step <= before}
    require(not lost, ", ".join(f"{task} started again at step {step}" for task, step in
                                lost.items())
            + f" after its restart, but the checkpoint of step {before} "
            f"({saved[before].prefix.name}) "
            f"was saved before the kill (at step {killed_at})", RESTORE)
    return (f"{kills[0]['task']} was killed at step {killed_at}; the restarted workers went on "
            f"from step {min(resumed.values())}, after the checkpoint of step {before}")


def check_evaluator(run: Run, saved: dict[int, Checkpoint], steps: int) -> str:
    evaluator = next((t for t in run.meta.get("tasks", []) if t.get("name") == "evaluator:0"),
                     None)
    require(evaluator and evaluator.get("exit_code") == 0,
            f"the evaluator did not end by itself (status "
            f"{evaluator and evaluator.get('status')})", EVALUATOR)
    records = [json.loads(p.read_text()) for p in sorted((run.output / "eval").glob("*.json"))]
    seen = sorted(int(r["step"]) for r in records)
    require(len(seen) >= 2 and seen[-1] >= steps,
            f"the evaluator evaluated {len(seen)} checkpoint(s) (steps {seen}); it should "
            f"follow training to step {steps}, through several checkpoints", EVALUATOR)
    by_name = {ckpt.prefix.name: (step, ckpt) for step, ckpt in saved.items()}
    for record in records:
        name = str(record.get("checkpoint"))
        require(name in by_name, f"the evaluator evaluated {name}, which training never saved",
                EVALUATOR)
        step, ckpt = by_name[name]
        accuracy = test_accuracy(run, mlp_weights(ckpt))
        # One held-out digit either way: TensorFlow and numpy may round a near tie apart.
        require(step == record["step"] and abs(accuracy - record["accuracy"]) <= 1.5 / 360,
                f"the evaluator's record of {name} (step {record['step']}, accuracy "
                f"{record['accuracy']:.4f}) does not match the checkpoint (step {step}, "
                f"accuracy {accuracy:.4f})",
                "evaluate the checkpoint's own weights: restore them, then evaluate")
    require(list((run.output / "eval").glob("events.out.tfevents.*")),
            "the evaluator wrote no TensorBoard events (eval/events.out.tfevents.*)",
            "write the accuracy with tf.summary.scalar under a file writer on eval/")
    return f"the evaluator followed {len(seen)} checkpoints, steps {seen[0]} to {seen[-1]}"


def check(run: Run) -> str:
    saved: dict[int, Checkpoint] = {}  # every checkpoint training kept, by its own step
    for index in sorted((run.output / "checkpoints").glob("ckpt-*.index")):
        ckpt = run.checkpoint(f"checkpoints/{index.name.removesuffix('.index')}")
        saved[step_of(ckpt, STEP)] = ckpt
    ckpt = run.checkpoint("checkpoints")
    accuracy = check_accuracy(run, ckpt)
    steps = check_steps(run, ckpt, STEP)
    return f"{accuracy}; {check_resume(run, saved)}; {check_evaluator(run, saved, steps)}"


if __name__ == "__main__":
    main(check)
