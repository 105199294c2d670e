"""Lab 11: continuous training. Each run trains the digits MLP, starting from the newest exported
version when there is one, and exports the result as the next version:

    --output-dir/digits/<version>/   a SavedModel, signature serving_default:
                                     pixels float32 [N, 64] -> probabilities [N, 10], digit [N]

That folder is TF Serving's model base path: the server loads each new version by itself. A
version is written under a temporary name and renamed when complete, so the server never sees
half a model. results.json keeps a sample of test images with this model's own predictions, for
the check to compare with the server's answers.
"""

import labkit  # noqa: F401  (first: start time, quiet TensorFlow start-up)
from labkit import cli, report
from labkit.cluster import config_error

args = cli.parse(__doc__, steps=600)

import os  # noqa: E402
import shutil  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402  (after option parsing: bad options fail fast)
from labkit import data, model  # noqa: E402

SAMPLE = 8  # test images kept with their predictions

base = args.output_dir / "digits"
base.mkdir(parents=True, exist_ok=True)
versions = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())
version = (versions[-1] if versions else 0) + 1


class Digits(tf.Module):
    """The MLP as plain variables, with the serving signature."""

    def __init__(self, features: int) -> None:
        super().__init__()
        glorot = tf.keras.initializers.GlorotUniform(seed=version)
        self.w1 = tf.Variable(glorot([features, model.HIDDEN]), name="w1")
        self.b1 = tf.Variable(tf.zeros([model.HIDDEN]), name="b1")
        self.w2 = tf.Variable(glorot([model.HIDDEN, model.CLASSES]), name="w2")
        self.b2 = tf.Variable(tf.zeros([model.CLASSES]), name="b2")
        self.params = [self.w1, self.b1, self.w2, self.b2]

    def logits(self, x: tf.Tensor) -> tf.Tensor:
        return model.mlp_logits(self.params, x)

    @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32, name="pixels")])
    def serve(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = self.logits(pixels)
        return {"probabilities": tf.nn.softmax(logits),
                "digit": tf.argmax(logits, axis=1, output_type=tf.int32)}


dataset = data.load(args.dataset)
if dataset.features != 64:
    config_error("the served model takes 8x8 digits: use --dataset digits")
net = Digits(dataset.features)
if versions:  # continuous training: go on from the newest version
    previous = tf.saved_model.load(str(base / str(versions[-1])))
    for mine, theirs in zip(net.params, (previous.w1, previous.b1, previous.w2, previous.b2),
                            strict=True):
        mine.assign(theirs)
    print(f"warm start from version {versions[-1]}", flush=True)

optimizer = tf.keras.optimizers.Adam(args.learning_rate)
x_test, y_test = tf.constant(dataset.x_test), tf.constant(dataset.y_test)


@tf.function
def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    with tf.GradientTape() as tape:
        loss, _ = model.loss_and_accuracy(net.logits(x), y)
    optimizer.apply_gradients(zip(tape.gradient(loss, net.params), net.params, strict=True))
    return loss


progress = report.Progress()
batches = data.batches(dataset, args.batch_size, seed=version)
for step in range(1, args.steps + 1):
    x, y = next(batches)
    loss = train_step(tf.constant(x), tf.constant(y))
    accuracy = None
    if step % args.eval_every == 0 or step == args.steps:
        accuracy = float(model.loss_and_accuracy(net.logits(x_test), y_test)[1])
    progress.update(step, float(loss), accuracy, force=step == args.steps)

staging = base / f".staging-{version}-{os.getpid()}"  # not a number: Serving ignores it
shutil.rmtree(staging, ignore_errors=True)
tf.saved_model.save(net, str(staging), signatures={"serving_default": net.serve})
staging.rename(base / str(version))
print(f"exported version {version} to {base / str(version)}", flush=True)

sample = np.asarray(dataset.x_test[:SAMPLE], dtype=np.float32)
own = net.serve(tf.constant(sample))
report.write_results(
    args.output_dir, "11-serving-continuous-training", progress, dataset=args.dataset,
    test_accuracy=round(float(model.loss_and_accuracy(net.logits(x_test), y_test)[1]), 4),
    version=version, export=f"digits/{version}", warm_start=versions[-1] if versions else None,
    sample={"instances": sample.round(6).tolist(),
            "probabilities": own["probabilities"].numpy().round(6).tolist(),
            "digits": own["digit"].numpy().tolist()},
)
