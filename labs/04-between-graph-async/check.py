"""Check lab 04: accuracy, every worker took part, and the variables really live on every ps.

Where the Adam updates ran is read from the chief's traced first step (step_stats.pbtxt) and
the graph it saved (checkpoints/graph.pbtxt): each ps task must have updated some variables.
"""

from labkit.checks import Run, check_accuracy, executed_on, graph_nodes, main, require, task_of


def check(run: Run) -> str:
    results = run.results()
    accuracy = check_accuracy(run, results)
    ps = run.task_count("ps") or results.get("ps", 0)
    workers = run.task_count("worker") or results.get("workers", 0)
    done = run.tasks("worker")
    require(len(done) == workers, f"{len(done)} of {workers} workers wrote tasks/worker-*.json",
            f"a worker did not finish: `labctl logs {run.lab} --task worker:N`")
    ops = {name: node["op"] for name, node in
           graph_nodes(run.text("checkpoints/graph.pbtxt")).items()}
    updated_on: dict[str, int] = {}
    for name, devices in executed_on(run.text("step_stats.pbtxt")).items():
        if ops.get(name) == "ResourceApplyAdam":
            for device in devices:
                updated_on[task_of(device)] = updated_on.get(task_of(device), 0) + 1
    idle = [f"ps:{i}" for i in range(ps) if not updated_on.get(f"ps:{i}")]
    require(sum(updated_on.values()) == 4 and not idle,
            f"Adam updates ran on {updated_on or 'no task'}; ps tasks without any: "
            f"{', '.join(idle) or 'none'}",
            "build the model under tf1.device(replica_device_setter(cluster=...)) so that "
            "the variables are spread round robin over the ps tasks")
    steps = ", ".join(f"{stem} {t['local_steps']}" for stem, t in done.items())
    spread = ", ".join(f"{task} {n}" for task, n in sorted(updated_on.items()))
    return (f"{accuracy}; local steps: {steps}; variable updates per ps: {spread}")


if __name__ == "__main__":
    main(check)
