"""Lab 02: one graph, spread over a cluster of ps and worker tasks.

Every task starts a tf.distribute.Server for its place in TF_CONFIG's ClusterSpec. Worker 0
then builds lab 01's graph with each op pinned to a task, runs it from its own session and
records, from the run's trace, where each op really ran. The other tasks only serve; they exit
when worker 0 puts its name on their done queue.
"""

import labkit  # noqa: F401  (first: start time, quiet TensorFlow start-up)
from labkit import cli, cluster, report

args = cli.parse(__doc__, training=False)
cfg = cluster.load(required={"ps", "worker"})

import tensorflow as tf  # noqa: E402  (after option parsing: bad input fails fast)
from labkit import graph  # noqa: E402

server = graph.start_server(cfg)
ps, workers = cfg.tasks("ps"), cfg.tasks("worker")
if cfg.task != workers[0]:
    graph.serve_until_done(server, cfg, finishers=[workers[0]], output_dir=args.output_dir)
    report.exit_now()


def on(tasks: list[cluster.Task], i: int) -> str:
    """The device of the i-th task of a job, round robin."""
    return tasks[i % len(tasks)].device


g = tf.Graph()
with g.as_default():
    # The values live on the ps tasks (round robin), the arithmetic on the workers.
    with tf.device(on(ps, 0)):
        a = tf.Variable(1, name="a")
    with tf.device(on(ps, 1)):
        b = tf.Variable(2, name="b")
    with tf.device(on(ps, 2)):
        c = tf.Variable(3, name="c")
    with tf.device(on(ps, 3)):
        d = tf.Variable(4, name="d")
    with tf.device(on(workers, 0)):
        add1 = tf.add(a, b, name="add1")
    with tf.device(on(workers, 1)):
        mul1 = tf.multiply(b, c, name="mul1")
    with tf.device(on(workers, 2)):
        tf.add(c, d, name="add2")  # output does not need it: it never runs
        output = tf.add(add1, mul1, name="output")
    init = tf.compat.v1.global_variables_initializer()

# Constant folding off: with tf.constant instead of tf.Variable, Grappler would compute 9 on
# worker 0 and no op would run anywhere else (README: "Try next").
config = graph.session_config([t.device for t in ps + workers], fold_constants=False)
with tf.compat.v1.Session(server.target, graph=g, config=config) as sess:
    sess.run(init)
    value, ran_on = graph.traced_run(sess, output, None, args.output_dir / "step_stats.pbtxt")
tf.io.write_graph(g.as_graph_def(), str(args.output_dir), "graph.pbtxt", as_text=True)
print(f"output = {value}")
for name in ("a", "b", "c", "d", "add1", "mul1", "add2", "output"):
    print(f"  {name:6} pinned to {g.get_operation_by_name(name).device:22} "
          f"ran on {ran_on.get(name, '(not run)')}")
report.write_json(args.output_dir / "results.json", {
    "lab": "02-local-cluster", "value": int(value), "ps": len(ps), "workers": len(workers),
    "wall_time_s": round(report.time_since_start(), 3)})
graph.signal_done_and_exit(server, cfg, [t for t in ps + workers if t != cfg.task])
