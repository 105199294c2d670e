"""Write a TensorFlow checkpoint (tensor bundle) without TensorFlow, to hand a check a run whose
weights are known: forged, diverged or truncated. The reader it feeds, labs/labkit/checkpoint.py,
is tested against checkpoints TensorFlow itself wrote (test_checkpoint.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from labkit.checkpoint import TABLE_MAGIC

DTYPES = {np.dtype(np.float32): 1, np.dtype(np.int64): 9, np.dtype(np.int32): 3}


def write(prefix: Path, tensors: dict[str, np.ndarray], shards: dict[str, int] | None = None,
          ) -> None:
    """PREFIX.index and PREFIX.data-*; `shards` puts a tensor in a shard other than 0."""
    shards = shards or {}
    count = max(shards.values(), default=0) + 1
    blobs: list[bytearray] = [bytearray() for _ in range(count)]
    entries = [(b"", _field(1, count))]  # BundleHeaderProto: num_shards
    for name in sorted(tensors):
        array = np.asarray(tensors[name], order="C")
        shard = shards.get(name, 0)
        dims = b"".join(_bytes(2, _field(1, n)) for n in array.shape)
        entry = (_field(1, DTYPES[array.dtype]) + _bytes(2, dims) + _field(3, shard)
                 + _field(4, len(blobs[shard])) + _field(5, array.nbytes))
        blobs[shard] += array.astype(array.dtype.newbyteorder("<")).tobytes()
        entries.append((name.encode(), entry))
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for shard, blob in enumerate(blobs):
        Path(f"{prefix}.data-{shard:05d}-of-{count:05d}").write_bytes(bytes(blob))
    data = _block(entries)
    index = _block([(entries[-1][0], _varint(0) + _varint(len(data) - 5))])
    handles = _varint(0) + _varint(0) + _varint(len(data)) + _varint(len(index) - 5)
    footer = handles.ljust(40, b"\0")
    Path(f"{prefix}.index").write_bytes(data + index + footer + struct.pack("<Q", TABLE_MAGIC))
    # The path the saving task saw (a pod's, say): the reader keeps only the name.
    state = f'model_checkpoint_path: "/elsewhere/{prefix.name}"\n'
    (prefix.parent / "checkpoint").write_text(state)


def _block(pairs: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v for k, v in pairs)
    return body + struct.pack("<II", 0, 1) + b"\0" * 5  # restarts [0], 1 restart; trailer


def _field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
