"""The training step of the all-reduce labs (07, 13): MultiWorkerMirroredStrategy, custom loop.

Every worker reads its own shard of the training set, computes gradients on its share of the
global batch, and Keras's apply_gradients sums them across the workers (the all-reduce) before
every worker applies the same update to its own copy of the variables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import tensorflow as tf

from labkit import data


def batches(strategy: tf.distribute.Strategy, ds: data.Dataset, global_batch: int) -> Iterator:
    """Endless shuffled batches, each worker reading its own shard of the training set."""
    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        train = tf.data.Dataset.from_tensor_slices((ds.x_train, ds.y_train))
        train = train.shard(context.num_input_pipelines, context.input_pipeline_id)
        return train.shuffle(len(ds.y_train)).repeat().batch(
            context.get_per_replica_batch_size(global_batch))

    return iter(strategy.distribute_datasets_from_function(dataset_fn))


def train_step(strategy: tf.distribute.Strategy, net, optimizer,
               global_batch: int) -> Callable[[Iterator], tf.Tensor]:
    """One synchronous step on every worker; returns the loss summed over the workers."""
    @tf.function
    def step(iterator: Iterator) -> tf.Tensor:
        def replica_fn(x, y):
            with tf.GradientTape() as tape:
                per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    y, net(x, training=True))
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            grads = tape.gradient(loss, net.trainable_variables)
            # Keras sums the gradients over all workers (all-reduce) before applying them.
            optimizer.apply_gradients(zip(grads, net.trainable_variables, strict=True))
            return loss

        losses = strategy.run(replica_fn, args=next(iterator))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return step
