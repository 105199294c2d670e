"""Check lab 02: the saved graph computes 9 and every op ran on the task it was pinned to.

Placement is read from the run itself: step_stats.pbtxt (the RunMetadata of the traced run,
reported by the tasks that executed each op) against graph.pbtxt (where each op was pinned).
The value is computed here from graph.pbtxt (the variables' initial values, + and *).
"""

from labkit.checks import Run, evaluate, executed_on, graph_nodes, main, require, task_of

ON_PATH = ("a", "b", "c", "add1", "mul1", "output")  # what output needs
OFF_PATH = ("d", "add2")


def check(run: Run) -> str:
    results = run.results()
    pinned = graph_nodes(run.text("graph.pbtxt"))
    value = evaluate(pinned, "output", {})
    require(value == 9, f"the saved graph computes output = {value}, expected 9",
            "output = (a + b) + (b * c) with a=1, b=2, c=3")
    require(results.get("value") == value, f"the program reported {results.get('value')!r}, "
            f"but its graph computes {value}", "run the graph you saved: sess.run(output)")
    ran = executed_on(run.text("step_stats.pbtxt"))
    used = set()
    for name in ON_PATH:
        want = task_of(pinned.get(name, {}).get("device", ""))
        require(want, f"{name} is not pinned to a task in graph.pbtxt",
                "create each op under `with tf.device(task.device)`")
        where = {task_of(device) for device in ran.get(name, ())}
        require(where == {want}, f"{name} was pinned to {want} but ran on "
                f"{', '.join(sorted(where)) or 'no task'}",
                "keep constant folding off and the values in tf.Variable (see the README)")
        used.add(want)
    for name in OFF_PATH:
        require(name not in ran, f"{name} ran although output does not need it",
                "run only `output`: a session executes just the subgraph a fetch needs")
    tasks = run.task_count("ps") + run.task_count("worker")
    return (f"output = 9; {', '.join(ON_PATH)} each ran on the task it was pinned to "
            f"({len(used)} of the {tasks} tasks: {', '.join(sorted(used))}); d and add2 never ran")


if __name__ == "__main__":
    main(check)
