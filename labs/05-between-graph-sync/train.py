"""Lab 05: between-graph replication, synchronous updates.

Lab 04's program with one change: the optimizer is wrapped in SyncReplicasOptimizer. Workers
push their gradients into accumulators on the ps; once replicas_to_aggregate gradients
(here: one per worker) are in, the chief's queue runner applies their average and hands out
tokens that let every worker start its next step. One global step = one averaged update.
"""

import labkit  # noqa: F401  (first: start time, quiet TensorFlow start-up)
from labkit import cli, cluster, report

args = cli.parse(__doc__, steps=500)
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
setter = tf1.train.replica_device_setter(cluster=tf.train.ClusterSpec(cfg.cluster),
                                         worker_device=cfg.task.device)
with tf1.device(setter):
    global_step = tf1.train.get_or_create_global_step()
    params = model.mlp_variables(ds.features)
    x = tf1.placeholder(tf.float32, [None, ds.features])
    y = tf1.placeholder(tf.int32, [None])
    loss, accuracy = model.loss_and_accuracy(model.mlp_logits(params, x), y)
    replicas = len(workers)  # a global step waits for one gradient from each worker
    optimizer = tf1.train.SyncReplicasOptimizer(tf1.train.AdamOptimizer(args.learning_rate),
                                                replicas_to_aggregate=replicas,
                                                total_num_replicas=replicas)
    train = optimizer.minimize(loss, global_step=global_step)
    tf1.summary.scalar("loss", loss)

config = graph.session_config(["/job:ps", cfg.task.device])
# The sync hook: the chief initializes the token queue and runs the queue runner that
# applies the aggregated gradients; the others wait for their tokens.
hooks = [optimizer.make_session_run_hook(is_chief), tf1.train.StopAtStepHook(last_step=args.steps)]
trained = graph.train_between_graph(
    server, cfg, args, ds=ds, is_chief=is_chief, config=config, hooks=hooks, train=train,
    global_step=global_step, loss=loss, accuracy=accuracy, inputs=(x, y))
if is_chief:
    report.write_results(out, "05-between-graph-sync", trained.progress, dataset=args.dataset,
                         test_accuracy=trained.test_accuracy, ps=len(ps), workers=len(workers),
                         replicas_to_aggregate=replicas)
graph.signal_done_and_exit(server, cfg, ps)
