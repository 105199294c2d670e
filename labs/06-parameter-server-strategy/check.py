"""Check lab 06: the trained weights, the steps the workers ran, and where the variables live.

All from the coordinator's last checkpoint (checkpoints/):
- accuracy: its weights, evaluated here on the held-out data;
- steps: global_step, a variable on a ps that each step adds 1 to on the worker that ran it;
- placement: TensorFlow writes one data shard per task that holds variables, each written by
  that task. save_counter is the coordinator's own variable, so its shard is the chief's: a
  model weight in that shard lives on the chief, not on a ps; with several ps tasks, the
  weights are spread over as many shards.
"""

from labkit.checks import Run, check_accuracy, check_steps, main, require

WEIGHTS = ("w1", "b1", "w2", "b2")
SCOPE = "create the model and the optimizer inside `with strategy.scope():`"


def check(run: Run) -> str:
    ckpt = run.checkpoint("checkpoints")
    accuracy = check_accuracy(run, ckpt)
    steps = check_steps(run, ckpt)
    chief = ckpt.shard_of("save_counter/.ATTRIBUTES/VARIABLE_VALUE")
    shards = {name: ckpt.shard_of(f"weights/{name}/.ATTRIBUTES/VARIABLE_VALUE")
              for name in WEIGHTS}
    local = [name for name, shard in shards.items() if shard == chief]
    require(not local, f"{', '.join(local)} were saved by the coordinator itself (the shard of "
            "its save_counter): they live on the chief, not on a ps", SCOPE)
    ps, spread = run.task_count("ps"), len(set(shards.values()))
    require(spread == min(ps, len(WEIGHTS)),
            f"the 4 weights are held by {spread} task(s); with {ps} ps tasks they should be "
            f"spread over {min(ps, len(WEIGHTS))}", SCOPE)
    return (f"{accuracy}; the workers ran {steps} steps (global_step in the checkpoint); the 4 "
            f"weights live on {spread} ps task(s), none on the coordinator")


if __name__ == "__main__":
    main(check)
