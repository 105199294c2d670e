"""The one model every training lab trains: an MLP, features -> 64 ReLU -> 10 classes.

Two spellings of the same network: graph-mode variables for the TF1 labs (03-05) and Keras 3
layers for the TF2 strategy labs (06, 07).
"""

from __future__ import annotations

import tensorflow as tf

HIDDEN = 64
CLASSES = 10
tf1 = tf.compat.v1


def mlp_variables(features: int) -> list[tf.Variable]:
    """w1, b1, w2, b2 as graph variables; the caller's device scope decides where they live."""
    glorot, zeros = tf1.glorot_uniform_initializer(), tf1.zeros_initializer()
    return [
        tf1.get_variable("w1", [features, HIDDEN], initializer=glorot),
        tf1.get_variable("b1", [HIDDEN], initializer=zeros),
        tf1.get_variable("w2", [HIDDEN, CLASSES], initializer=glorot),
        tf1.get_variable("b2", [CLASSES], initializer=zeros),
    ]


def mlp_logits(params: list[tf.Variable], x: tf.Tensor) -> tf.Tensor:
    w1, b1, w2, b2 = params
    return tf.matmul(tf.nn.relu(tf.matmul(x, w1) + b1), w2) + b2


def loss_and_accuracy(logits: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    loss = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    hits = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels)
    return loss, tf.reduce_mean(tf.cast(hits, tf.float32))


def keras_mlp(features: int):  # -> keras.Sequential (keras is imported lazily with TensorFlow)
    import keras

    return keras.Sequential([
        keras.Input((features,)),
        keras.layers.Dense(HIDDEN, activation="relu"),
        keras.layers.Dense(CLASSES),
    ])


def keras_weights(net) -> dict[str, tf.Variable]:
    """The Keras MLP's weights under the TF1 labs' names: a checkpoint of them reads the same
    as lab 03-05's, whichever lab wrote it."""
    return dict(zip(("w1", "b1", "w2", "b2"), net.trainable_variables, strict=True))
