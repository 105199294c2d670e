"""Lab 01: a data-flow graph, built and run two ways.

The same small graph of constants and arithmetic ops, first as a TF1 graph run by a
tf.compat.v1.Session, then as a tf.function traced into a graph. Both are written for
TensorBoard, and as protobuf text (graph.pbtxt, function_graph.pbtxt) for the check to read.
"""

import labkit  # noqa: F401  (first: start time, quiet TensorFlow start-up)
from labkit import cli, report

args = cli.parse(__doc__, training=False)

import tensorflow as tf  # noqa: E402  (after option parsing: bad options fail fast)

out = args.output_dir
tf1 = tf.compat.v1

# 1. TF1 style: describe the graph first, run it later in a Session.
graph = tf.Graph()
with graph.as_default():
    a = tf.constant(1, name="a")
    b = tf.constant(2, name="b")
    c = tf.constant(3, name="c")
    d = tf.constant(4, name="d")
    add1 = tf.add(a, b, name="add1")
    mul1 = tf.multiply(b, c, name="mul1")
    add2 = tf.add(c, d, name="add2")  # in the graph, but output does not need it
    output = tf.add(add1, mul1, name="output")

with tf1.Session(graph=graph) as sess:
    session_value = int(sess.run(output))  # runs only what output depends on
print(f"Session:     output = {session_value}")
tf.io.write_graph(graph.as_graph_def(), str(out), "graph.pbtxt", as_text=True)
with graph.as_default(), tf1.summary.FileWriter(str(out / "events" / "session"), graph=graph):
    pass  # writing the graph is all we want; FileWriter refuses to run outside graph mode


# 2. TF2 style: a Python function that tf.function traces into the same kind of graph.
@tf.function
def compute(a, b, c, d):
    add1 = tf.add(a, b, name="add1")
    mul1 = tf.multiply(b, c, name="mul1")
    tf.add(c, d, name="add2")  # traced, then pruned: nothing uses it
    return tf.add(add1, mul1, name="output")


writer = tf.summary.create_file_writer(str(out / "events" / "function"))
tf.summary.trace_on(graph=True)
function_value = int(compute(tf.constant(1), tf.constant(2), tf.constant(3), tf.constant(4)))
with writer.as_default():
    tf.summary.trace_export("compute", step=0)
writer.close()
print(f"tf.function: output = {function_value}")
function_graph = compute.get_concrete_function(*[tf.TensorSpec([], tf.int32)] * 4).graph
tf.io.write_graph(function_graph.as_graph_def(), str(out), "function_graph.pbtxt", as_text=True)

report.write_json(out / "results.json", {
    "lab": "01-dataflow-graph",
    "value": session_value,
    "function_value": function_value,
    "wall_time_s": round(report.time_since_start(), 3),
})
print(f"graphs written to {out}/*.pbtxt; TensorBoard event files in {out / 'events'}")
report.exit_now()
