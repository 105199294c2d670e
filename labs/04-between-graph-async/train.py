"""Labs 04 and 05: between-graph replication, asynchronous (04) or synchronous (05, --sync).

Every worker runs this program and builds its own copy of the graph. replica_device_setter
puts the variables on the ps tasks (round robin) and the computation on the worker itself.
Asynchronous: each worker applies its gradients on the ps as soon as they are ready, nobody
waits for anybody. Synchronous: SyncReplicasOptimizer collects one gradient from every worker
and applies their average once per global step.
Worker 0 is the chief: it initializes the variables (or restores them from the latest
checkpoint), saves checkpoints and summaries. The ps tasks serve until every worker is done.
"""

import labkit  # noqa: F401  (first: start time, quiet TensorFlow start-up)
from labkit import cli, cluster, report

args = cli.parse(__doc__, steps=1000, flags={"sync": "synchronous updates (lab 05)"})
cfg = cluster.load(required={"ps", "worker"})

import tensorflow as tf  # noqa: E402  (after option parsing: bad input fails fast)
from labkit import data, graph, model  # noqa: E402

tf1 = tf.compat.v1
tf1.disable_eager_execution()  # a TF1 program: build one graph, run it in sessions
out = args.output_dir
server = graph.start_server(cfg)
ps, workers = cfg.tasks("ps"), cfg.tasks("worker")
if cfg.task.type == "ps":
    graph.serve_until_done(server, cfg, finishers=workers, output_dir=out)
    report.exit_now()

ds = data.load(args.dataset)
is_chief = cfg.task.index == 0
hooks = [tf1.train.StopAtStepHook(last_step=args.steps)]
setter = tf1.train.replica_device_setter(cluster=tf.train.ClusterSpec(cfg.cluster),
                                         worker_device=cfg.task.device)
with tf1.device(setter):  # tf.device() refuses a device function: tf1.device takes one
    global_step = tf1.train.get_or_create_global_step()
    params = model.mlp_variables(ds.features)
    x = tf1.placeholder(tf.float32, [None, ds.features])
    y = tf1.placeholder(tf.int32, [None])
    loss, accuracy = model.loss_and_accuracy(model.mlp_logits(params, x), y)
    optimizer = tf1.train.AdamOptimizer(args.learning_rate)
    if args.sync:  # lab 05: the one change. A global step waits for a gradient from each worker.
        optimizer = tf1.train.SyncReplicasOptimizer(optimizer, replicas_to_aggregate=len(workers),
                                                    total_num_replicas=len(workers))
        # The chief's hook fills the token queue and runs the queue runner that applies the
        # averaged gradients; the other workers' hooks make them wait for their tokens.
        hooks.append(optimizer.make_session_run_hook(is_chief))
    train = optimizer.minimize(loss, global_step=global_step)
    tf1.summary.scalar("loss", loss)
    tf1.summary.scalar("accuracy", accuracy)  # on the training batch; lab 15 watches both
placement = {v.op.name: v.device for v in tf1.global_variables()}
if is_chief:
    for task in ps:
        print(f"{task.name} holds", *(n for n, d in placement.items() if d == task.device))

# This worker talks to the ps tasks and itself only, never waits for the other workers.
config = graph.session_config(["/job:ps", cfg.task.device])
trained = graph.train_between_graph(
    server, cfg, args, ds=ds, is_chief=is_chief, config=config, hooks=hooks, train=train,
    global_step=global_step, loss=loss, accuracy=accuracy, inputs=(x, y))
if is_chief:
    report.write_results(out, "05-between-graph-sync" if args.sync else "04-between-graph-async",
                         trained.progress, dataset=args.dataset, ps=len(ps), workers=len(workers),
                         test_accuracy=trained.test_accuracy)
graph.signal_done_and_exit(server, cfg, ps)
