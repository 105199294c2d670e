"""Images as bags of tokens, hashed into the rows of an embedding table (numpy, no TensorFlow).

Lab 12's model looks each token up in a table of --rows rows and sums the rows it finds, as a
recommender looks up user and item ids. The tokens of a square image: every pixel's position
and value (17 levels), and every pair of horizontal neighbours' values. Token ids are hashed
into the table (the hashing trick): a smaller table folds more tokens onto one row. The
program and the check compute the same ids with this one function.
"""

from __future__ import annotations

import numpy as np

LEVELS = 17  # pixel values 0..16, as the digits data comes
_HASH = 2654435761  # Knuth's multiplicative hash: spreads neighbouring ids over the table


def token_ids(x: np.ndarray, rows: int) -> np.ndarray:
    """[n, side*side] pixels in [0, 1] -> [n, tokens] int64 row ids in [0, rows)."""
    side = round(x.shape[1] ** 0.5)
    values = np.rint(x * (LEVELS - 1)).astype(np.int64)
    pixels = np.arange(side * side) * LEVELS + values
    grid = values.reshape(-1, side, side)
    pair_index = np.arange(side * (side - 1)).reshape(side, side - 1)
    pairs = side * side * LEVELS + (pair_index * LEVELS + grid[:, :, :-1]) * LEVELS \
        + grid[:, :, 1:]
    tokens = np.concatenate([pixels, pairs.reshape(len(x), -1)], axis=1)
    return tokens * _HASH % rows
