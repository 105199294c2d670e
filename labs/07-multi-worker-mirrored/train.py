"""Lab 07: all-reduce with MultiWorkerMirroredStrategy: no parameter servers at all.

Every worker holds a full copy (a mirror) of the variables. At each step each worker computes
gradients on its own share of the global batch; a collective all-reduce sums them across the
workers, and every worker applies the same update to its copy, so the copies never diverge.
Keras 3 layers with a custom training loop (Keras 3's model.fit fails under this strategy);
the step itself is labkit.mirrored's, which lab 13 shares.
At the end every worker writes its own copy of the weights to checkpoints/worker-<index>/.
"""

import labkit  # noqa: F401  (first: start time, quiet TensorFlow start-up)
from labkit import cli, cluster, report

args = cli.parse(__doc__, steps=400)
cfg = cluster.load(required={"worker"})

import tensorflow as tf  # noqa: E402  (after option parsing: bad input fails fast)

# Before any other TensorFlow op: the strategy configures this process's runtime.
strategy = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402
from labkit import data, mirrored, model  # noqa: E402

ds = data.load(args.dataset)
global_batch = args.batch_size * cfg.count("worker")
with strategy.scope():  # variables created here are mirrored on every worker
    net = model.keras_mlp(ds.features)
    optimizer = keras.optimizers.Adam(args.learning_rate)


train_step = mirrored.train_step(strategy, net, optimizer, global_batch)


@tf.function
def weight_checksums() -> tf.Tensor:
    """Every worker's checksum of its own copy of the weights, gathered from all workers."""
    def replica_fn():
        total = tf.add_n([tf.reduce_sum(tf.abs(v)) for v in net.trainable_variables])
        return tf.reshape(total, [1])

    return strategy.gather(strategy.run(replica_fn), axis=0)


batches = mirrored.batches(strategy, ds, global_batch)
progress = report.Progress()
for step in range(1, args.steps + 1):
    loss = train_step(batches)
    last = step == args.steps
    accuracy = None
    if step % args.eval_every == 0 or last:  # local: each worker evaluates its own copy
        _, accuracy = model.loss_and_accuracy(net(ds.x_test), ds.y_test)
    progress.update(step, loss, accuracy, force=last)

checksums = [float(c) for c in weight_checksums().numpy()]  # a collective: all workers at once
print(f"test accuracy {progress.accuracy:.4f}; weight checksums of the workers: {checksums}")
# This worker's own copy: write(), not save(), which would also count saves in a variable.
tf.train.Checkpoint(weights=model.keras_weights(net), optimizer=optimizer).write(
    str(args.output_dir / "checkpoints" / cfg.task.stem / "weights"))
report.write_task(args.output_dir, cfg.task.stem, progress, args.steps)
if cfg.task.index == 0:
    report.write_results(args.output_dir, "07-multi-worker-mirrored", progress,
                         dataset=args.dataset, test_accuracy=progress.accuracy,
                         workers=cfg.count("worker"))
report.exit_now()
