"""Check lab 01: the value is 9, and the saved graphs hold the ops with the right edges.

Reads graph.pbtxt and function_graph.pbtxt, the GraphDefs the program wrote, and follows their
recorded inputs: output must depend on add1 and mul1 and not on add2.
"""

from labkit.checks import Run, ancestors, graph_nodes, main, require

EXPECTED_OPS = {"add1": "AddV2", "mul1": "Mul", "add2": "AddV2", "output": "AddV2"}


def check_graph(run: Run, file: str) -> None:
    nodes = graph_nodes(run.text(file))
    for name, op in EXPECTED_OPS.items():
        require(nodes.get(name, {}).get("op") == op, f"{file} has no {op} node named {name!r}",
                "build the graph with tf.add/tf.multiply and name= each op as in the README")
    path = ancestors(nodes, "output")
    require({"add1", "mul1", "a", "b", "c"} <= path,
            f"in {file}, output does not depend on add1, mul1 and the constants a, b, c",
            "output = add1 + mul1, with add1 = a + b and mul1 = b * c")
    require("add2" not in path and "d" not in path,
            f"in {file}, add2 (or d) is on output's path", "output must not use add2")


def check(run: Run) -> str:
    results = run.results()
    for key in ("value", "function_value"):
        require(results.get(key) == 9, f"{key} is {results.get(key)!r}, expected 9",
                "a=1, b=2, c=3, d=4; output = (a + b) + (b * c)")
    check_graph(run, "graph.pbtxt")
    check_graph(run, "function_graph.pbtxt")
    return ("Session and tf.function both computed 9; both graphs hold add1/mul1/add2/output "
            "and output's inputs reach add1, mul1, a, b, c but not add2 or d")


if __name__ == "__main__":
    main(check)
