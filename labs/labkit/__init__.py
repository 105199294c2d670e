"""labkit: the pieces every lab program and check shares.

Import order matters for lab programs: import `labkit` first (it records the task's start time
and quiets TensorFlow's C++ start-up banner), parse options and TF_CONFIG, and only then import
TensorFlow, so that a bad option or a bad TF_CONFIG fails in a fraction of a second.

Modules that never import TensorFlow: `cli`, `cluster`, `report`, `checks`.
Modules that do: `data` (only for MNIST), `model`, `graph`, `mirrored`, `serving`.
"""

import os

# Info/warning lines from TensorFlow's C++ side would drown each task's log; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN's fused kernels pay off for large convolutions, not for a 64-unit MLP; with them off
# TensorFlow also drops the start-up lines it prints before its log settings apply.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

# The task's clocks: its start, and how long `import tensorflow` takes (labkit.report).
from labkit import report  # noqa: F401
