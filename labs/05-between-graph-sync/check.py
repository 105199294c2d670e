"""Check lab 05: the trained weights, the step count, and that training really was synchronous.

- Accuracy and global step: the chief's last checkpoint, evaluated here on the held-out data.
- Synchrony, from the graph the chief saved (checkpoints/graph.pbtxt): SyncReplicasOptimizer's
  gradient accumulators (one per variable) and its token queue are there, and each
  accumulator's take_grad waits for num_required = one gradient per worker of the run.
- Participation: one tasks/worker-<i>.json per worker. Without restarts, the workers' local
  steps add up to at least about workers x global steps (every update averages num_required
  gradients, each one worker's local step; stale ones only add to the count); asynchronously,
  they add up to the global steps.
"""

from labkit.checks import (
    Run,
    check_accuracy,
    check_participation,
    check_steps,
    evaluate,
    graph_nodes,
    main,
    require,
)

TAKE = ("ResourceAccumulatorTakeGradient", "AccumulatorTakeGradient")
SYNC = "minimize with tf1.train.SyncReplicasOptimizer and pass its make_session_run_hook()"


def check(run: Run) -> str:
    ckpt = run.checkpoint("checkpoints")
    accuracy = check_accuracy(run, ckpt)
    steps = check_steps(run, ckpt)
    local = check_participation(run)
    workers = run.task_count("worker")
    nodes = graph_nodes(run.text("checkpoints/graph.pbtxt"))
    takes = [node for node in nodes.values() if node["op"] in TAKE]
    require(len(takes) == 4 and "sync_token_q" in nodes,
            f"the graph has {len(takes)} gradient accumulators (expected 4, one per variable) "
            f"and {'a' if 'sync_token_q' in nodes else 'no'} token queue: the updates were "
            "applied asynchronously", SYNC)
    required = sorted({evaluate(nodes, node["data"][1], {}) for node in takes})
    require(required == [workers],
            f"each update averages {' or '.join(map(str, required))} gradient(s) (the "
            f"accumulators' num_required), but the run has {workers} workers",
            "pass replicas_to_aggregate=len(workers): with fewer, each step goes ahead "
            "without the slowest workers' gradients (backup workers), which is not lab 05")
    total = sum(local.values())
    if not any(task.get("restarts") for task in run.meta.get("tasks", [])):
        require(total >= 0.9 * workers * steps,
                f"the workers took {total} local steps for {steps} global steps; synchronous "
                f"training takes about {workers} x {steps}", SYNC)
    return (f"{accuracy}; global step {steps}; every update averaged {workers} gradients "
            f"(num_required of the 4 accumulators); local steps: "
            f"{', '.join(f'{stem} {n}' for stem, n in sorted(local.items()))}")


if __name__ == "__main__":
    main(check)
