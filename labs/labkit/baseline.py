"""Single-process baseline for the benchmark (`make bench`): the labs' MLP, Adam optimizer,
batch size and test-accuracy schedule, trained for the same steps, with no cluster at all.

Run as `python -m labkit.baseline --output-dir DIR --steps N` (labs/ on PYTHONPATH). It writes
results.json like a lab program does.
"""

import labkit  # noqa: F401  (first: start time, quiet TensorFlow start-up)
from labkit import cli, report

args = cli.parse(__doc__, steps=1000)

import keras  # noqa: E402  (after option parsing: bad input fails fast)
import tensorflow as tf  # noqa: E402

from labkit import data, model  # noqa: E402

ds = data.load(args.dataset)
net = model.keras_mlp(ds.features)
optimizer = keras.optimizers.Adam(args.learning_rate)


@tf.function
def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    with tf.GradientTape() as tape:
        loss, _ = model.loss_and_accuracy(net(x, training=True), y)
    grads = tape.gradient(loss, net.trainable_variables)
    optimizer.apply_gradients(zip(grads, net.trainable_variables, strict=True))
    return loss


progress = report.Progress()
batches = data.batches(ds, args.batch_size, seed=0)
for step in range(1, args.steps + 1):
    loss = train_step(*next(batches))
    last = step == args.steps
    accuracy = None
    if step % args.eval_every == 0 or last:
        _, accuracy = model.loss_and_accuracy(net(ds.x_test), ds.y_test)
    progress.update(step, loss, accuracy, force=last)
report.write_results(args.output_dir, "baseline", progress, dataset=args.dataset,
                     test_accuracy=progress.accuracy, workers=0, batch_size=args.batch_size)
report.exit_now()
