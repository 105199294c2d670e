"""Read a TensorFlow checkpoint with numpy alone, so that a check can judge what training left.

A checkpoint (TF1 `Saver` or TF2 `tf.train.Checkpoint`, both "V2" tensor bundles) is
`PREFIX.index`, a LevelDB-format table from tensor name to where its bytes are, and
`PREFIX.data-SSSSS-of-NNNNN`, one data file per shard: the saver writes one shard per task that
holds variables. The layouts followed here are TensorFlow's tensorflow/core/util/tensor_bundle
(BundleHeaderProto, BundleEntryProto) and tensorflow/core/lib/io (table format, block handles).
Importing TensorFlow would cost a check about 4 s; this costs milliseconds.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48  # two BlockHandles padded to 40 bytes, then the magic number
BLOCK_TRAILER = 5  # compression type byte + crc32 after every block
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
          9: np.int64, 10: np.bool_, 19: np.float16}  # types.proto DataType values
SKIPPED = {7: "string", 14: "bfloat16", 21: "variant"}  # what no lab's check needs


class CheckpointError(Exception):
    """The files are not a checkpoint this reader understands (truncated, not a bundle)."""


@dataclass(frozen=True)
class Entry:
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    sliced: bool  # a partitioned variable: its slices are stored under other, binary keys


def latest(directory: Path) -> Path | None:
    """The prefix the `checkpoint` state file names last, or None without one.

    The state file holds the path the saving task saw (absolute, inside a pod on a cluster):
    this reader keeps only its name, so that a run directory copied from a pod, or moved, reads
    the same. (TensorFlow itself would use the absolute path.)
    """
    state = directory / "checkpoint"
    if not state.is_file():
        return None
    match = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', state.read_text(), re.M)
    return directory / Path(match.group(1)).name if match else None


class Checkpoint:
    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        index = Path(f"{prefix}.index")
        if not index.is_file():
            raise CheckpointError(f"{index.name} is missing")
        try:
            header, self.entries = _read_table(index.read_bytes())
        except CheckpointError as err:
            raise CheckpointError(f"{index.name}: {err}") from None
        self.shards = int(header.get(1, 1))

    def shard_of(self, name: str) -> int:
        return self._entry(name).shard

    def slices(self, name: str) -> list[Entry]:
        """The pieces of partitioned variable `name`, in the order of their first row.

        Each piece is stored under a key that TensorFlow's OrderedCode builds from the name and
        the slice's extents (tensor_slice_reader, EncodeTensorNameSlice): a 0 byte, the name,
        the bytes 0 1, then the extents, encoded so that keys sort by the slice's start."""
        prefix = f"\x00{name}\x00\x01"
        return [entry for key, entry in sorted(self.entries.items()) if key.startswith(prefix)]

    def tensor(self, name: str) -> np.ndarray:
        entry = self._entry(name)
        if entry.sliced:
            pieces = [self.read(piece, name) for piece in self.slices(name)]
            try:  # the labs' partitioners split the first axis only
                whole = np.concatenate(pieces) if pieces else np.zeros(0)
            except ValueError:
                whole = np.zeros(0)
            if whole.shape != entry.shape:
                raise CheckpointError(f"{name}: its {len(pieces)} slices make "
                                      f"{list(whole.shape)}, the index says {list(entry.shape)}")
            return whole
        return self.read(entry, name)

    def read(self, entry: Entry, name: str) -> np.ndarray:
        """The values of one entry (a whole tensor, or one slice of `name`)."""
        if entry.dtype not in DTYPES:
            kind = SKIPPED.get(entry.dtype, f"DataType {entry.dtype}")
            raise CheckpointError(f"{name} holds {kind} values, which this reader skips")
        data = Path(f"{self.prefix}.data-{entry.shard:05d}-of-{self.shards:05d}")
        if not data.is_file():
            raise CheckpointError(f"{data.name} is missing")
        with data.open("rb") as file:
            file.seek(entry.offset)
            raw = file.read(entry.size)
        dtype = np.dtype(DTYPES[entry.dtype]).newbyteorder("<")
        if len(raw) != entry.size or entry.size != dtype.itemsize * int(np.prod(entry.shape)):
            raise CheckpointError(f"{name}: {len(raw)} bytes in {data.name}, the index says "
                                  f"{entry.size} for shape {list(entry.shape)}")
        return np.frombuffer(raw, dtype).reshape(entry.shape)

    def _entry(self, name: str) -> Entry:
        if name not in self.entries:
            raise CheckpointError(f"the checkpoint has no tensor {name!r}")
        return self.entries[name]


def _read_table(blob: bytes) -> tuple[dict[int, int], dict[str, Entry]]:
    if len(blob) < FOOTER_BYTES or struct.unpack("<Q", blob[-8:])[0] != TABLE_MAGIC:
        raise CheckpointError("the .index file is not a TensorFlow table (truncated?)")
    footer = blob[-FOOTER_BYTES:]
    _, pos = _varint(footer, 0)  # metaindex offset and size: the bundle keeps nothing there
    _, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    header: dict[int, int] = {}
    entries: dict[str, Entry] = {}
    for _, handle in _block(blob, index_offset, index_size):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        for key, value in _block(blob, offset, size):
            if key == b"":  # the bundle's header: num_shards (1), endianness (2)
                header = {f: v for f, v in _fields(value) if isinstance(v, int)}
                if header.get(2, 0) != 0:
                    raise CheckpointError("a big-endian checkpoint: not supported")
            else:
                # Slice keys of partitioned variables are binary (OrderedCode), not UTF-8.
                entries[key.decode(errors="surrogateescape")] = _entry(value)
    return header, entries


def _block(blob: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """A table block's (key, value) pairs; keys share prefixes with the previous key."""
    if offset + size + BLOCK_TRAILER > len(blob) or blob[offset + size] != 0:
        raise CheckpointError("a block of the .index file is truncated or compressed")
    block = blob[offset:offset + size]
    restarts = struct.unpack("<I", block[-4:])[0]
    end = len(block) - 4 * (restarts + 1)
    pairs, key, pos = [], b"", 0
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        pairs.append((key, block[pos:pos + length]))
        pos += length
    return pairs


def _entry(value: bytes) -> Entry:
    """BundleEntryProto: dtype (1), shape (2), shard_id (3), offset (4), size (5), slices (7)."""
    fields = dict(_fields(value))
    shape = fields.get(2, b"")
    dims = [v for f, v in _fields(shape) if f == 2] if isinstance(shape, bytes) else []
    sizes = tuple(int(dict(_fields(d)).get(1, 0)) for d in dims if isinstance(d, bytes))
    return Entry(int(fields.get(1, 0)), sizes, int(fields.get(3, 0)), int(fields.get(4, 0)),
                 int(fields.get(5, 0)), sliced=7 in fields)


def _fields(message: bytes) -> list[tuple[int, int | bytes]]:
    """Protobuf wire format: (field number, int for varints and fixed, bytes for the rest)."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(message):
        tag, pos = _varint(message, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(message, pos)
            out.append((field, value))
        elif wire == 2:
            length, pos = _varint(message, pos)
            out.append((field, message[pos:pos + length]))
            pos += length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            out.append((field, int.from_bytes(message[pos:pos + width], "little")))
            pos += width
        else:
            raise CheckpointError(f"protobuf wire type {wire} in a bundle entry")
    return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise CheckpointError("a varint runs past the end of the .index file")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
