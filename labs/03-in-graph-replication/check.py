"""Check lab 03: the trained weights, the step count, and that the towers and the update
really ran where they belong.

- Accuracy: the checkpoint's weights, evaluated here on the held-out data; its global_step is
  the number of updates applied.
- Towers: from the traced first step (step_stats.pbtxt), every worker task the launcher
  started executed MatMul ops; from the graph (graph.pbtxt), every Adam update depends on the
  gradients of every tower.
- The update: the ps executed one Adam update per variable and, with several towers, the sum
  of their gradients (AddN; one tower has nothing to sum).
"""

from labkit.checks import (
    Run,
    ancestors,
    check_accuracy,
    check_steps,
    executed_on,
    graph_nodes,
    main,
    require,
    task_of,
)

UPDATE = "ResourceApplyAdam"


def check(run: Run) -> str:
    ckpt = run.checkpoint("checkpoints")
    accuracy = check_accuracy(run, ckpt)
    steps = check_steps(run, ckpt)
    nodes = graph_nodes(run.text("graph.pbtxt"))
    ran_ops: dict[str, list[str]] = {}  # task -> op types it executed
    for name, devices in executed_on(run.text("step_stats.pbtxt")).items():
        for device in devices:
            ran_ops.setdefault(task_of(device), []).append(nodes.get(name, {}).get("op", ""))
    towers = [f"worker:{i}" for i in range(run.task_count("worker"))]
    require(towers, "run.json names no worker task", "run the lab with `labctl run 03`")
    for tower in towers:
        require("MatMul" in ran_ops.get(tower, []), f"{tower} ran no MatMul",
                "build each tower under `with tf.device(worker.device)`")
    on_ps = ran_ops.get("ps:0", [])
    require(on_ps.count(UPDATE) == 4, f"the ps ran {on_ps.count(UPDATE)} Adam updates "
            "(expected 4: w1, b1, w2, b2)", "apply the gradients under `with tf.device(ps.device)`")
    summed_on = ", ".join(sorted(t for t, ops in ran_ops.items() if "AddN" in ops))
    require(len(towers) == 1 or "AddN" in on_ps,
            f"the gradients of the {len(towers)} towers were not summed on the ps (AddN ran "
            f"on {summed_on or 'no task'})",
            "average the gradients under `with tf.device(ps.device)`")
    for name, node in nodes.items():
        if node["op"] == UPDATE:
            fed_by = {task_of(nodes[a]["device"]) for a in ancestors(nodes, name)}
            missing = [t for t in towers if t not in fed_by]
            require(not missing, f"{name} uses no gradient from the tower on "
                    f"{', '.join(missing)}", "average the gradients of every tower: "
                    "zip(*(tower gradients for every worker))")
    return (f"{accuracy}; global step {steps}; each of the {len(towers)} workers ran a tower "
            "(MatMul) whose gradients feed every update; the ps "
            + ("summed them (AddN) and " if len(towers) > 1 else "")
            + "applied the 4 Adam updates")


if __name__ == "__main__":
    main(check)
