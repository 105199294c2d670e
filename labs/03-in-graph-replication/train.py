"""Lab 03: in-graph replication: one client builds one graph for the whole cluster.

The chief task is the client. It puts the model's variables on the ps, builds one replica of
the model (a "tower") per worker, averages the towers' gradients on the ps and applies them
there. One session.run trains all towers at once, synchronously. The ps and worker tasks only
serve: their servers run whatever part of the graph the chief places on them.
"""

import labkit  # noqa: F401  (first: start time, quiet TensorFlow start-up)
from labkit import cli, cluster, report

args = cli.parse(__doc__, steps=600)
cfg = cluster.load(required={"chief", "ps", "worker"})

import tensorflow as tf  # noqa: E402  (after option parsing: bad input fails fast)
from labkit import data, graph, model  # noqa: E402

tf1 = tf.compat.v1
out = args.output_dir
server = graph.start_server(cfg)
chief, ps, workers = cluster.Task("chief", 0), cfg.tasks("ps")[0], cfg.tasks("worker")
if cfg.task != chief:
    graph.serve_until_done(server, cfg, finishers=[chief], output_dir=out)
    report.exit_now()

ds = data.load(args.dataset)
g = tf.Graph()
with g.as_default():
    with tf.device(ps.device):
        global_step = tf1.train.get_or_create_global_step()
        params = model.mlp_variables(ds.features)
    towers = []  # (inputs, labels, loss, gradients) per worker
    for worker in workers:
        with tf.device(worker.device), tf.name_scope(worker.stem):
            x = tf1.placeholder(tf.float32, [None, ds.features], name="x")
            y = tf1.placeholder(tf.int32, [None], name="y")
            loss, _ = model.loss_and_accuracy(model.mlp_logits(params, x), y)
            towers.append((x, y, loss, tf.gradients(loss, params)))
    with tf.device(ps.device):
        tower_grads = zip(*(t[3] for t in towers), strict=True)  # per variable: one per tower
        mean_grads = [tf.add_n(list(grads)) / len(workers) for grads in tower_grads]
        mean_loss = tf.add_n([t[2] for t in towers]) / len(workers)
        train = tf1.train.AdamOptimizer(args.learning_rate).apply_gradients(
            zip(mean_grads, params, strict=True), global_step=global_step)
    with tf.device(workers[0].device), tf.name_scope("test"):
        x_test = tf1.placeholder(tf.float32, [None, ds.features], name="x")
        y_test = tf1.placeholder(tf.int32, [None], name="y")
        _, test_accuracy = model.loss_and_accuracy(model.mlp_logits(params, x_test), y_test)
    init = tf1.global_variables_initializer()
    saver = tf1.train.Saver()  # the trained weights and global_step, for the check to evaluate
tf.io.write_graph(g, str(out), "graph.pbtxt", as_text=True)

feeds = [data.batches(ds, args.batch_size, seed=i) for i in range(len(workers))]
progress = report.Progress()
config = graph.session_config(t.device for job in cfg.cluster for t in cfg.tasks(job))
with tf1.Session(server.target, graph=g, config=config) as sess:
    sess.run(init)
    for step in range(1, args.steps + 1):
        feed = {}
        for (x, y, _, _), batches in zip(towers, feeds, strict=True):
            feed[x], feed[y] = next(batches)
        if step == 1:  # trace one step: the check reads where the towers really ran
            (_, loss), _ = graph.traced_run(sess, [train, mean_loss], feed,
                                            out / "step_stats.pbtxt")
        else:
            _, loss = sess.run([train, mean_loss], feed)
        last = step == args.steps
        accuracy = None
        if step % args.eval_every == 0 or last:
            accuracy = sess.run(test_accuracy, {x_test: ds.x_test, y_test: ds.y_test})
        progress.update(step, loss, accuracy, force=last)

    saver.save(sess, str(out / "checkpoints" / "model.ckpt"), global_step=global_step)
print(f"test accuracy {accuracy:.4f} after {args.steps} steps of {len(workers)} towers")
report.write_task(out, cfg.task.stem, progress, args.steps)
report.write_results(out, "03-in-graph-replication", progress, dataset=args.dataset,
                     test_accuracy=float(accuracy), towers=len(workers),
                     batch_size=args.batch_size)
graph.signal_done_and_exit(server, cfg, [t for job in ("ps", "worker") for t in cfg.tasks(job)])
