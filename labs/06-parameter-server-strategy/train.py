"""Lab 06: the TF2 way to use parameter servers: ParameterServerStrategy + ClusterCoordinator.

The chief is the coordinator: it creates the model's variables (they land on the ps tasks),
then schedules training steps as remote functions that any free worker picks up. Workers and
ps tasks run no Python of their own: they start a server and wait. Keras 3 layers and a
custom training loop (Keras 3's model.fit does not support this strategy).
"""

import labkit  # noqa: F401  (first: start time, quiet TensorFlow start-up)
from labkit import cli, cluster, report

args = cli.parse(__doc__, steps=600)
cfg = cluster.load(required={"chief", "ps", "worker"})

import keras  # noqa: E402  (after option parsing: bad input fails fast)
import tensorflow as tf  # noqa: E402
from labkit import data, model  # noqa: E402

if cfg.task.type != "chief":
    # Serve until the launcher stops us: a server cannot know when the coordinator is done.
    tf.distribute.Server(tf.train.ClusterSpec(cfg.cluster), job_name=cfg.task.type,
                         task_index=cfg.task.index, start=True).join()

ds = data.load(args.dataset)
strategy = tf.distribute.ParameterServerStrategy(
    tf.distribute.cluster_resolver.TFConfigClusterResolver())
coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
with strategy.scope():  # variables created here live on the ps tasks
    net = model.keras_mlp(ds.features)
    optimizer = keras.optimizers.Adam(args.learning_rate)
    optimizer.build(net.trainable_variables)  # its slots too, before any step runs remotely


def dataset_fn() -> tf.data.Dataset:  # runs on each worker: its own shuffled stream
    train = tf.data.Dataset.from_tensor_slices((ds.x_train, ds.y_train))
    return train.shuffle(len(ds.y_train)).repeat().batch(args.batch_size)


@tf.function
def train_step(iterator) -> tf.Tensor:
    def replica_fn(x, y):
        with tf.GradientTape() as tape:
            loss, _ = model.loss_and_accuracy(net(x, training=True), y)
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables, strict=True))
        return loss

    return strategy.run(replica_fn, args=next(iterator))


batches = iter(coordinator.create_per_worker_dataset(dataset_fn))
progress = report.Progress()
loss = coordinator.schedule(train_step, args=(batches,))
progress.update(0, loss.fetch())  # the first step has run: start-up is over
scheduled = 1
while scheduled < args.steps:
    chunk = min(args.eval_every, args.steps - scheduled)
    for _ in range(chunk):
        loss = coordinator.schedule(train_step, args=(batches,))
    scheduled += chunk
    coordinator.join()  # wait for the scheduled steps, then evaluate here on the chief
    _, accuracy = model.loss_and_accuracy(net(ds.x_test), ds.y_test)
    # Each scheduled step runs once (on another worker if one fails): they count the steps.
    progress.update(scheduled, loss.fetch(), accuracy.numpy(), force=scheduled == args.steps)

placement = {v.path: v.value.device for v in net.trainable_variables}
print(f"test accuracy {progress.accuracy:.4f}; variables on", *sorted(set(placement.values())))
report.write_task(args.output_dir, cfg.task.stem, progress, scheduled)
report.write_results(args.output_dir, "06-parameter-server-strategy", progress,
                     dataset=args.dataset, test_accuracy=progress.accuracy,
                     ps=cfg.count("ps"), workers=cfg.count("worker"), variables=placement)
report.exit_now()
