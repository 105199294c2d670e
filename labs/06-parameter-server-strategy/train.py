"""Lab 06: the TF2 way to use parameter servers: ParameterServerStrategy + ClusterCoordinator.

The chief is the coordinator: it creates the model's variables (they land on the ps tasks),
then schedules training steps as remote functions that any free worker picks up. Workers and
ps tasks run no Python of their own: they start a server and wait. Keras 3 layers and a
custom training loop (Keras 3's model.fit does not support this strategy).

The coordinator saves a checkpoint every 100 steps and restores the latest one when
it starts: after a lost ps it is restarted (by the launcher or Kubernetes) and goes on from
there, since the variables that ps held are gone.
"""

import os
import re

import labkit  # noqa: F401  (first: start time, quiet TensorFlow start-up)
from labkit import cli, cluster, report

args = cli.parse(__doc__, steps=600, learning_rate=0.005)
cfg = cluster.load(required={"chief", "ps", "worker"})

# TensorFlow's parameter-server tutorial sets this on every task (2.21's default already): a
# fail-fast request to an unreachable task fails at once, so the coordinator learns of the loss.
os.environ.setdefault("GRPC_FAIL_FAST", "use_caller")
import keras  # noqa: E402  (after option parsing: bad input fails fast)
import tensorflow as tf  # noqa: E402
from labkit import data, model  # noqa: E402

tf.get_logger().setLevel("ERROR")  # the saver's retracing notices on every checkpoint

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
    # Counts the steps the workers applied, on a ps: assign_add is atomic there, whereas
    # Keras's optimizer.iterations (read, then assign) can lose counts to concurrent workers.
    global_step = tf.Variable(0, dtype=tf.int64, name="global_step")
checkpoint = tf.train.Checkpoint(weights=model.keras_weights(net), optimizer=optimizer,
                                 global_step=global_step)
saved = tf.train.CheckpointManager(checkpoint, args.output_dir / "checkpoints", max_to_keep=2)
checkpoint.restore(saved.latest_checkpoint)  # None on a first start: nothing to restore
CHECKPOINT_STEPS = 100  # as lab 04's chief; each save costs the coordinator about 0.2 s


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
        global_step.assign_add(1)
        return loss

    return strategy.run(replica_fn, args=next(iterator))


def train(batches, progress: report.Progress) -> int:
    """Schedule steps until --steps have run; a checkpoint every CHECKPOINT_STEPS and at the end."""
    done = saved_at = int(global_step.numpy())
    if done:
        print(f"restored the checkpoint of step {done}", flush=True)
    while done < args.steps:
        target = min((done // args.eval_every + 1) * args.eval_every, args.steps)
        for _ in range(target - done):
            loss = coordinator.schedule(train_step, args=(batches,))
            if progress.first_step_at is None:
                progress.update(done, loss.fetch())  # one step has run: start-up is over
        coordinator.join()  # wait for the scheduled steps, then evaluate here on the chief
        done = int(global_step.numpy())  # the steps the workers really ran
        if done // CHECKPOINT_STEPS > saved_at // CHECKPOINT_STEPS or done >= args.steps:
            saved.save(checkpoint_number=done)
            saved_at = done
        _, accuracy = model.loss_and_accuracy(net(ds.x_test), ds.y_test)
        progress.update(done, loss.fetch(), accuracy.numpy(), force=done >= args.steps)
    return done


progress = report.Progress()
try:
    done = train(iter(coordinator.create_per_worker_dataset(dataset_fn)), progress)
except tf.errors.UnavailableError as err:
    # A lost worker is handled by the coordinator; a lost ps took variables with it.
    lost = re.search(r"/job:ps/replica:\d+/task:\d+", err.message or "")
    print(f"{lost.group(0) if lost else 'a parameter server'} is unreachable: exiting, to be "
          "restarted from the last checkpoint", flush=True)
    report.exit_now(1)

devices = sorted({v.value.device for v in net.trainable_variables})
print(f"test accuracy {progress.accuracy:.4f}; variables on", *devices)
report.write_task(args.output_dir, cfg.task.stem, progress, done)
report.write_results(args.output_dir, "06-parameter-server-strategy", progress,
                     dataset=args.dataset, test_accuracy=progress.accuracy,
                     ps=cfg.count("ps"), workers=cfg.count("worker"))
report.exit_now()
