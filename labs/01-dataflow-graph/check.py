"""Check lab 01: the saved graphs compute 9, hold the ops with the right edges, and are the
graphs the program ran.

Reads graph.pbtxt and function_graph.pbtxt, the GraphDefs TensorFlow wrote, computes `output`
from them (constants, or the function's inputs 1, 2, 3, 4), and follows their recorded inputs:
output must depend on add1 and mul1 and not on add2.
"""

from labkit.checks import Run, ancestors, evaluate, graph_nodes, main, require

EXPECTED_OPS = {"add1": "AddV2", "mul1": "Mul", "add2": "AddV2", "output": "AddV2"}
INPUTS = {"a": 1, "b": 2, "c": 3, "d": 4}


def check_graph(run: Run, file: str, printed: object) -> None:
    nodes = graph_nodes(run.text(file))
    for name, op in EXPECTED_OPS.items():
        require(nodes.get(name, {}).get("op") == op, f"{file} has no {op} node named {name!r}",
                "build the graph with tf.add/tf.multiply and name= each op as in the README")
    value = evaluate(nodes, "output", INPUTS)
    require(value == 9, f"the graph in {file} computes output = {value}, expected 9",
            "a=1, b=2, c=3, d=4; output = (a + b) + (b * c)")
    require(printed == value, f"the program reported {printed!r}, but its graph in {file} "
            f"computes {value}", "run the graph you saved: sess.run(output) / compute(...)")
    path = ancestors(nodes, "output")
    require({"add1", "mul1", "a", "b", "c"} <= path,
            f"in {file}, output does not depend on add1, mul1 and the constants a, b, c",
            "output = add1 + mul1, with add1 = a + b and mul1 = b * c")
    require("add2" not in path and "d" not in path,
            f"in {file}, add2 (or d) is on output's path", "output must not use add2")


def check(run: Run) -> str:
    results = run.results()
    check_graph(run, "graph.pbtxt", results.get("value"))
    check_graph(run, "function_graph.pbtxt", results.get("function_value"))
    return ("both saved graphs (Session and tf.function) compute output = 9; they hold "
            "add1/mul1/add2/output and output's inputs reach add1, mul1, a, b, c but not add2 "
            "or d")


if __name__ == "__main__":
    main(check)
