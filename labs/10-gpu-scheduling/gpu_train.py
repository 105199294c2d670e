"""Lab 10: does TensorFlow see the GPU that the scheduler gave this pod?

Lists the GPUs TensorFlow can use, trains the digits MLP on the first one (on the CPU when there
is none, so the check can say exactly what is missing), and records where the training ops ran.
"""

import labkit  # noqa: F401  (first: start time, quiet TensorFlow start-up)
from labkit import cli, report

args = cli.parse(__doc__, steps=300)

import tensorflow as tf  # noqa: E402  (after option parsing: bad options fail fast)
from labkit import data, model  # noqa: E402

gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
device = "/GPU:0" if gpus else "/CPU:0"
print(f"GPUs visible to TensorFlow: {gpus or 'none'}; training on {device}", flush=True)

dataset = data.load(args.dataset)
progress = report.Progress()
with tf.device(device):
    net = model.keras_mlp(dataset.features)
    optimizer = tf.keras.optimizers.Adam(args.learning_rate)
    x_test, y_test = tf.constant(dataset.x_test), tf.constant(dataset.y_test)

    @tf.function
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            logits = net(x, training=True)
            loss, _ = model.loss_and_accuracy(logits, y)
        optimizer.apply_gradients(zip(tape.gradient(loss, net.trainable_variables),
                                      net.trainable_variables, strict=True))
        return loss, logits

    batches = data.batches(dataset, args.batch_size, seed=0)
    for step in range(1, args.steps + 1):
        x, y = next(batches)
        loss, logits = train_step(tf.constant(x), tf.constant(y))
        accuracy = None
        if step % args.eval_every == 0 or step == args.steps:
            _, accuracy = model.loss_and_accuracy(net(x_test), y_test)
            accuracy = float(accuracy)
        progress.update(step, float(loss), accuracy, force=step == args.steps)
    ran_on = logits.device

_, test_accuracy = model.loss_and_accuracy(net(x_test), y_test)
print(f"training ops ran on {ran_on}", flush=True)
# The trained weights, for the check to evaluate on the held-out data itself.
tf.train.Checkpoint(weights=model.keras_weights(net), optimizer=optimizer).write(
    str(args.output_dir / "checkpoints" / "weights"))
report.write_results(args.output_dir, "10-gpu-scheduling", progress, dataset=args.dataset,
                     test_accuracy=round(float(test_accuracy), 4), gpus=gpus, device=ran_on,
                     cuda_build=tf.test.is_built_with_cuda())
