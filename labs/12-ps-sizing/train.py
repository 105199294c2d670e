"""Lab 12: sizing parameter servers: one large variable, split over several ps tasks.

The model is an embedding table, as in a recommender: each digit becomes 120 tokens (every
pixel's position and value, every pair of horizontal neighbours), hashed into --rows rows of 16
numbers; the image is the sum of its tokens' rows, and a small dense layer maps that sum to the
10 classes. A variable of --rows x 16 floats is one a single ps should not hold alone, so it
is partitioned into at most --shards pieces of at least 64 KiB, spread over the ps tasks:
- TF2 (the default): ParameterServerStrategy with a variable_partitioner; the chief is the
  coordinator and schedules steps on the workers (as in lab 06);
- TF1 (--tf1): the chief builds one graph (as in lab 03): get_variable with a partitioner,
  under replica_device_setter with a placement that balances bytes; one tower per worker.
A shard's update runs on the ps that holds it, and a step moves only the rows its batch uses.
The chief prints the bytes each ps holds and the steps per second, and saves a checkpoint in
which every ps writes the shards it holds.
"""

import dataclasses

import labkit  # noqa: F401  (first: start time, quiet TensorFlow start-up)
from labkit import cli, cluster, report

args = cli.parse(__doc__, steps=400, learning_rate=0.2,
                 flags={"tf1": "the TF1 graph API instead of ParameterServerStrategy"},
                 numbers={"rows": (65536, "rows of the embedding table"),
                          "shards": (4, "the most pieces the table is split into")})
cfg = cluster.load(required={"chief", "ps", "worker"})

import tensorflow as tf  # noqa: E402  (after option parsing: bad input fails fast)
from labkit import data, model, tokens  # noqa: E402
from labkit.checks import task_of  # noqa: E402

tf1 = tf.compat.v1
DIM = 16  # numbers per row of the table
MIN_SHARD_BYTES = 64 << 10  # smaller variables stay whole: a shard this small is not worth a ps
if cfg.task.type != "chief":
    # Serve until the launcher stops us: the chief places work and variables here.
    tf.distribute.Server(tf.train.ClusterSpec(cfg.cluster), job_name=cfg.task.type,
                         task_index=cfg.task.index, start=True).join()

ds = data.load(args.dataset)
train_ids, test_ids = (tokens.token_ids(x, args.rows) for x in (ds.x_train, ds.x_test))
init_table = tf.random_normal_initializer(stddev=0.01, seed=1)  # small: 120 rows are summed
init_dense = tf.random_normal_initializer(stddev=0.1, seed=2)


def logits(table, w, b, ids):
    return tf.reduce_sum(tf.nn.embedding_lookup(table, ids), axis=1) @ w + b


def train_tf2(progress: report.Progress) -> tuple[list, int]:
    """ParameterServerStrategy: the partitioner splits the table; the strategy spreads the
    shards over the ps tasks, round robin."""
    strategy = tf.distribute.ParameterServerStrategy(
        tf.distribute.cluster_resolver.TFConfigClusterResolver(),
        variable_partitioner=tf.distribute.experimental.partitioners.MinSizePartitioner(
            min_shard_bytes=MIN_SHARD_BYTES, max_shards=args.shards))
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    with strategy.scope():
        table = tf.Variable(lambda: init_table((args.rows, DIM)), name="table")
        w = tf.Variable(lambda: init_dense((DIM, model.CLASSES)), name="w")
        b = tf.Variable(tf.zeros([model.CLASSES]), name="b")
        global_step = tf.Variable(0, dtype=tf.int64, name="global_step")
    pieces = getattr(table, "variables", [table])  # a table too small to split is one variable

    def dataset_fn() -> tf.data.Dataset:
        train = tf.data.Dataset.from_tensor_slices((train_ids, ds.y_train))
        return train.shuffle(len(ds.y_train)).repeat().batch(args.batch_size)

    @tf.function
    def train_step(iterator):
        def replica_fn(ids, y):
            with tf.GradientTape() as tape:
                loss, _ = model.loss_and_accuracy(logits(table, w, b, ids), y)
            variables = [*pieces, w, b]
            for var, grad in zip(variables, tape.gradient(loss, variables), strict=True):
                if isinstance(grad, tf.IndexedSlices):  # only the rows this batch looked up
                    var.scatter_sub(tf.IndexedSlices(args.learning_rate * grad.values,
                                                     grad.indices))
                else:
                    var.assign_sub(args.learning_rate * grad)
            global_step.assign_add(1)
            return loss

        return strategy.run(replica_fn, args=next(iterator))

    batches = iter(coordinator.create_per_worker_dataset(dataset_fn))
    done = 0
    while done < args.steps:
        for _ in range(min(args.eval_every, args.steps - done)):
            loss = coordinator.schedule(train_step, args=(batches,))
            if progress.first_step_at is None:
                progress.update(done, loss.fetch())  # one step has run: start-up is over
        coordinator.join()
        done = int(global_step.numpy())
        _, accuracy = model.loss_and_accuracy(logits(table, w, b, test_ids), ds.y_test)
        progress.update(done, loss.fetch(), accuracy.numpy(), force=done >= args.steps)
    tf.train.Checkpoint(table=table, w=w, b=b, global_step=global_step).write(
        str(args.output_dir / "checkpoints" / "model"))
    return [*pieces, w, b, global_step], done


class LeastLoaded:
    """A replica_device_setter ps_strategy: each variable goes to the ps holding the fewest
    bytes so far (TF1's contrib GreedyLoadBalancingStrategy, which TF2 no longer ships; the
    setter's default deals variables round robin, whatever their size)."""

    def __init__(self, ps: int) -> None:
        self.bytes = [0] * ps

    def __call__(self, op: tf.Operation) -> int:
        task = self.bytes.index(min(self.bytes))
        size = tf.TensorShape(op.get_attr("shape")).num_elements()
        self.bytes[task] += size * tf.as_dtype(op.get_attr("dtype")).size
        return task


def train_tf1(progress: report.Progress) -> tuple[list, int]:
    """One graph for the cluster: variables placed by the device setter, a tower per worker."""
    server = tf.distribute.Server(tf.train.ClusterSpec(cfg.cluster), job_name="chief",
                                  task_index=0, start=True)
    ps = cfg.count("ps")
    with tf.Graph().as_default():
        setter = tf1.train.replica_device_setter(ps_tasks=ps, worker_device="/job:chief/task:0",
                                                 ps_strategy=LeastLoaded(ps))
        with tf1.device(setter):
            global_step = tf1.train.get_or_create_global_step()
            table = tf1.get_variable(
                "table", [args.rows, DIM], initializer=init_table,
                partitioner=tf1.min_max_variable_partitioner(args.shards,
                                                             min_slice_size=MIN_SHARD_BYTES))
            w = tf1.get_variable("w", [DIM, model.CLASSES], initializer=init_dense)
            b = tf1.get_variable("b", [model.CLASSES], initializer=tf1.zeros_initializer())
        sgd, towers, updates = tf1.train.GradientDescentOptimizer(args.learning_rate), [], []
        for worker in cfg.tasks("worker"):
            with tf.device(worker.device), tf.name_scope(worker.stem):
                ids = tf1.placeholder(tf.int64, [None, train_ids.shape[1]])
                y = tf1.placeholder(tf.int32, [None])
                loss, _ = model.loss_and_accuracy(logits(table, w, b, ids), y)
                towers.append((ids, y, loss))
                updates.append(sgd.minimize(loss))  # each update is placed with its variable
        train = tf.group(*updates, global_step.assign_add(1))
        _, test_accuracy = model.loss_and_accuracy(logits(table, w, b, test_ids), ds.y_test)
        saver = tf1.train.Saver(sharded=True)  # one file per device: each ps writes its own
        variables = [*table, w, b, global_step]
        token_ds = dataclasses.replace(ds, x_train=train_ids)  # batches of token ids
        feeds = [data.batches(token_ds, args.batch_size, seed=i) for i in range(len(towers))]
        devices = [t.device for job in cfg.cluster for t in cfg.tasks(job)]
        with tf1.Session(server.target, config=tf1.ConfigProto(device_filters=devices)) as sess:
            sess.run(tf1.global_variables_initializer())
            for step in range(1, args.steps + 1):
                feed = {}
                for (ids, y, _), batches in zip(towers, feeds, strict=True):
                    feed[ids], feed[y] = next(batches)
                _, loss = sess.run([train, towers[0][2]], feed)
                last = step == args.steps
                accuracy = sess.run(test_accuracy) if step % args.eval_every == 0 or last else None
                progress.update(step, loss, accuracy, force=last)
            (args.output_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            saver.save(sess, str(args.output_dir / "checkpoints" / "model"), write_meta_graph=False)
            return variables, args.steps


progress = report.Progress()
variables, done = (train_tf1 if args.tf1 else train_tf2)(progress)
held: dict[str, int] = {}
for var in variables:
    held[task_of(var.device)] = held.get(task_of(var.device), 0) + \
        var.dtype.size * var.shape.num_elements()
speed = progress.timings(done)["steps_per_sec"]
print(f"test accuracy {progress.accuracy:.4f}; {speed} steps/s; bytes held:",
      ", ".join(f"{task} {n:,}" for task, n in sorted(held.items())), flush=True)
report.write_task(args.output_dir, cfg.task.stem, progress, done)
report.write_results(args.output_dir, "12-ps-sizing", progress, dataset=args.dataset,
                     test_accuracy=progress.accuracy, ps=cfg.count("ps"),
                     workers=cfg.count("worker"), api="tf1" if args.tf1 else "tf2")
report.exit_now()
