"""labkit.checkpoint reads what TensorFlow writes: checkpoints saved by TensorFlow 2.21 itself
(TF1 Saver, sharded; TF2 tf.train.Checkpoint) are read back without TensorFlow, value for value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "labs"))

from labkit import checkpoint  # noqa: E402


@pytest.mark.labs
def test_reads_tensorflow_checkpoints_value_for_value(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(Path(__file__).parent / "fixtures" /
                                        "write_checkpoints.py"), str(tmp_path)],
                   check=True, timeout=300, capture_output=True)
    expected = np.load(tmp_path / "values.npz")
    tf1 = checkpoint.Checkpoint(checkpoint.latest(tmp_path / "tf1"))
    tf2 = checkpoint.Checkpoint(checkpoint.latest(tmp_path / "tf2"))
    assert tf1.prefix.name == "model.ckpt-0" and tf2.prefix.name == "ckpt-600"
    assert tf1.shards == 2  # one data file per device that holds variables
    assert {tf1.shard_of("w1"), tf1.shard_of("tower/layer_000/kernel")} == {0, 1}
    for key in expected.files:
        which, name = key.split(":", 1)
        read = (tf1 if which == "tf1" else tf2).tensor(name)
        assert read.dtype == expected[key].dtype and np.array_equal(read, expected[key]), key
    assert len([k for k in tf1.entries if k.startswith("tower/")]) == 300
    assert tf1.entries["embedding"].sliced  # read above from its slices, in order
    assert [piece.shape for piece in tf1.slices("embedding")] == [(4, 4), (3, 4), (3, 4)]
    assert tf1.slices("embedd") == []  # a name's prefix is not the name
