"""Check lab 07: every worker ended with the same trained weights, after every step.

Each worker wrote its own copy of the weights (checkpoints/worker-<i>/weights), read here:
- one copy per worker the launcher started, each after --steps optimizer steps;
- all copies equal, bit for bit: the all-reduce gave every worker the same update;
- accuracy: worker 0's weights, evaluated here on the held-out data.
"""

import numpy as np
from labkit.checks import Run, check_accuracy, check_steps, main, mlp_weights, require

ALL_REDUCE = ("create the model and optimizer inside strategy.scope() and train with "
              "strategy.run: the all-reduce keeps the copies identical")


def check(run: Run) -> str:
    workers = run.task_count("worker")
    copies = []
    for i in range(workers):
        require((run.output / "checkpoints" / f"worker-{i}" / "weights.index").is_file(),
                f"worker-{i} wrote no copy of its weights (checkpoints/worker-{i}/)",
                f"every worker writes its own weights at the end: `labctl logs {run.lab[:2]} "
                f"--task worker:{i}`")
        copies.append(run.checkpoint(f"checkpoints/worker-{i}/weights"))
        check_steps(run, copies[-1], "optimizer/_iterations")
    accuracy = check_accuracy(run, copies[0])
    reference = mlp_weights(copies[0])
    for i, ckpt in enumerate(copies[1:], start=1):
        weights = mlp_weights(ckpt)
        gap = {name: float(np.max(np.abs(weights[name] - reference[name])))
               for name in reference}
        differ = [name for name, value in gap.items() if value > 0]
        require(not differ, f"worker-{i}'s weights differ from worker-0's ({', '.join(differ)}; "
                f"largest difference {max(gap.values()):.3g})", ALL_REDUCE)
    return (f"{accuracy}; all {workers} workers wrote identical weights after "
            f"{run.arg('steps')} steps each")


if __name__ == "__main__":
    main(check)
