"""Check lab 03: accuracy, and that the towers and the update really ran where they belong.

From the traced first step (step_stats.pbtxt) and the graph (graph.pbtxt): every worker task
executed MatMul ops (its tower), and the ps executed the gradient averaging (AddN) and one
Adam update per variable.
"""

from labkit.checks import Run, check_accuracy, executed_on, graph_nodes, main, require, task_of


def check(run: Run) -> str:
    results = run.results()
    accuracy = check_accuracy(run, results)
    ops = {name: node["op"] for name, node in graph_nodes(run.text("graph.pbtxt")).items()}
    ran_ops: dict[str, list[str]] = {}  # task -> op types it executed
    for name, devices in executed_on(run.text("step_stats.pbtxt")).items():
        for device in devices:
            ran_ops.setdefault(task_of(device), []).append(ops.get(name, ""))
    towers = results.get("towers", 0)
    for i in range(towers):
        require("MatMul" in ran_ops.get(f"worker:{i}", []), f"worker:{i} ran no MatMul",
                "build each tower under `with tf.device(worker.device)`")
    on_ps = ran_ops.get("ps:0", [])
    updates = on_ps.count("ResourceApplyAdam")
    require("AddN" in on_ps and updates == 4,
            f"the ps ran {updates} Adam updates (expected 4: w1, b1, w2, b2) "
            f"and {'an' if 'AddN' in on_ps else 'no'} AddN",
            "average the gradients and apply them under `with tf.device(ps.device)`")
    return (f"{accuracy}; each of the {towers} workers ran a tower (MatMul), the ps averaged "
            "the gradients (AddN) and applied 4 Adam updates")


if __name__ == "__main__":
    main(check)
