"""Check lab 04: the trained weights, the step count, every worker took part, and the
variables really live on every ps.

- Accuracy and global step: the chief's last checkpoint, evaluated here on the held-out data.
- Participation: one tasks/worker-<i>.json per worker the launcher started, each with steps.
- Placement: where the Adam updates ran, from the chief's traced first step
  (step_stats.pbtxt) and the graph it saved (checkpoints/graph.pbtxt): each ps task must
  have updated some variables.
"""

from labkit.checks import (
    Run,
    check_accuracy,
    check_participation,
    check_steps,
    executed_on,
    graph_nodes,
    main,
    require,
    task_of,
)


def check(run: Run) -> str:
    ckpt = run.checkpoint("checkpoints")
    accuracy = check_accuracy(run, ckpt)
    steps = check_steps(run, ckpt)
    local = check_participation(run)
    ops = {name: node["op"] for name, node in
           graph_nodes(run.text("checkpoints/graph.pbtxt")).items()}
    updated_on: dict[str, int] = {}
    for name, devices in executed_on(run.text("step_stats.pbtxt")).items():
        if ops.get(name) == "ResourceApplyAdam":
            for device in devices:
                updated_on[task_of(device)] = updated_on.get(task_of(device), 0) + 1
    idle = [f"ps:{i}" for i in range(run.task_count("ps")) if not updated_on.get(f"ps:{i}")]
    require(sum(updated_on.values()) == 4 and not idle,
            f"Adam updates ran on {updated_on or 'no task'}; ps tasks without any: "
            f"{', '.join(idle) or 'none'}",
            "build the model under tf1.device(replica_device_setter(cluster=...)) so that "
            "the variables are spread round robin over the ps tasks")
    spread = ", ".join(f"{task} {n}" for task, n in sorted(updated_on.items()))
    return (f"{accuracy}; global step {steps}; local steps: "
            f"{', '.join(f'{stem} {n}' for stem, n in sorted(local.items()))}; "
            f"variable updates per ps: {spread}")


if __name__ == "__main__":
    main(check)
