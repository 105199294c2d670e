"""The training data: the 8x8 digits (offline, the default) or MNIST (needs a download).

`digits.csv.gz` beside this file is scikit-learn's copy (the file `load_digits` reads, unchanged)
of the UCI "Optical Recognition of Handwritten Digits" test set (Alpaydin & Kaynak, 1998; 1797
rows: 64 pixel values 0-16, then the label). The data is CC BY 4.0: its attribution and
citation are in the repository's NOTICE. Shipping it here keeps lab programs free of
scikit-learn, which the official TensorFlow images that pods run do not have.

Every task of a run loads the same split (fixed seed), so test accuracy means the same thing
whichever task measures it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labkit.cluster import config_error

DIGITS_TEST = 360  # of 1797 images: 20 %
DIGITS_FILE = Path(__file__).with_name("digits.csv.gz")


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # float32, features scaled to [0, 1]
    y_train: np.ndarray  # int32 class labels
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def features(self) -> int:
        return int(self.x_train.shape[1])


def load(name: str) -> Dataset:
    x_train, y_train, x_test, y_test = _digits() if name == "digits" else _mnist()
    return Dataset(name, x_train.astype(np.float32), y_train.astype(np.int32),
                   x_test.astype(np.float32), y_test.astype(np.int32))


def digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits unscaled (pixels 0-16) and their labels, in the file's order."""
    raw = np.loadtxt(DIGITS_FILE, delimiter=",")
    return raw[:, :-1], raw[:, -1].astype(np.int64)


def _digits() -> tuple[np.ndarray, ...]:
    pixels, labels = digits_raw()
    order = np.random.default_rng(0).permutation(len(labels))
    test, train = order[:DIGITS_TEST], order[DIGITS_TEST:]
    x = pixels / 16.0
    return x[train], labels[train], x[test], labels[test]


def _mnist() -> tuple[np.ndarray, ...]:
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as err:  # any download failure: no network, proxy, DNS, bad cache
        reason = " ".join(str(err).split())[:160]
        config_error(f"cannot load MNIST ({type(err).__name__}: {reason}); it is downloaded "
                     "from the internet: use --dataset digits offline, or put mnist.npz in "
                     "~/.keras/datasets/")
    return (x_train.reshape(-1, 784) / 255.0, y_train, x_test.reshape(-1, 784) / 255.0, y_test)


def batches(data: Dataset, batch_size: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless random mini-batches; tasks pass different seeds so that they see different data."""
    rng = np.random.default_rng(seed)
    while True:
        pick = rng.integers(0, len(data.y_train), batch_size)
        yield data.x_train[pick], data.y_train[pick]
