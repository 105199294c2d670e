"""The served digits model of labs 11 and 16: the MLP as a tf.Module with TF Serving's signature,
trained from scratch or on from a published version, and saved so that nobody watching the
folder sees half a model.

A model base path holds one SavedModel per version, `<base>/<N>/`, TF Serving's layout; the
signature is `serving_default`: pixels float32 [N, 64] -> probabilities [N, 10], digit [N].
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import tensorflow as tf

from labkit import data, model, report

SIGNATURE = "serving_default"
WEIGHTS = ("w1", "b1", "w2", "b2")


def versions(base: Path) -> list[int]:
    """The published versions under a model base path, oldest first."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())


class Digits(tf.Module):
    """The MLP as plain variables, with the serving signature."""

    def __init__(self, features: int, seed: int) -> None:
        super().__init__()
        glorot = tf.keras.initializers.GlorotUniform(seed=seed)
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

    def warm_start(self, saved: Path) -> None:
        """Go on from a saved version: its weights become this model's."""
        previous = tf.saved_model.load(str(saved))
        for mine, name in zip(self.params, WEIGHTS, strict=True):
            mine.assign(getattr(previous, name))

    def test_accuracy(self, dataset: data.Dataset) -> float:
        logits = self.logits(tf.constant(dataset.x_test))
        return float(model.loss_and_accuracy(logits, tf.constant(dataset.y_test))[1])


def train(net: Digits, dataset: data.Dataset, *, steps: int, batch_size: int,
          learning_rate: float, eval_every: int, seed: int) -> report.Progress:
    """Adam on `dataset`'s training half, printing PROGRESS lines with the test accuracy."""
    optimizer = tf.keras.optimizers.Adam(learning_rate)

    @tf.function
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss, _ = model.loss_and_accuracy(net.logits(x), y)
        optimizer.apply_gradients(zip(tape.gradient(loss, net.params), net.params, strict=True))
        return loss

    progress = report.Progress()
    batches = data.batches(dataset, batch_size, seed=seed)
    for step in range(1, steps + 1):
        x, y = next(batches)
        loss = train_step(tf.constant(x), tf.constant(y))
        accuracy = None
        if step % eval_every == 0 or step == steps:
            accuracy = net.test_accuracy(dataset)
        progress.update(step, float(loss), accuracy, force=step == steps)
    return progress


def save(net: Digits, path: Path) -> None:
    """A SavedModel at `path`, written under a temporary name beside it and renamed when
    complete: TF Serving (or a gate) sees the whole model or nothing."""
    staging = path.with_name(f".staging-{path.name}-{os.getpid()}")  # not a number: ignored
    shutil.rmtree(staging, ignore_errors=True)
    tf.saved_model.save(net, str(staging), signatures={SIGNATURE: net.serve})
    staging.rename(path)
