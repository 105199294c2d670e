"""Check lab 12: the table was split, its pieces live on different ps tasks, and no ps holds
much more than its share.

All from the chief's checkpoint (checkpoints/model), in which every task that holds variables
writes its own data shard (TF1 Saver(sharded=True), TF2 tf.train.Checkpoint alike):
- partitioned: the table is saved as slices (the pieces the partitioner made), not whole;
- spread: the slices sit in as many data shards as there are ps tasks (or pieces, if fewer);
- balance: no shard holds more than (all variables' bytes / ps tasks) plus one piece;
- only ps tasks hold variables: no more shards than ps tasks, besides the TF2 coordinator's
  own shard (the one with the object graph) holding nothing else;
- trained: global_step reached --steps, and the weights, evaluated here, classify the
  held-out digits.
"""

import numpy as np
from labkit import data, tokens
from labkit.checks import Run, check_steps, main, require, variable_key

MIN_ACCURACY = 0.90  # a bag of hashed tokens is a coarser model than labs 03-07's MLP
OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"  # TF2: written by the task that saves
PARTITION = ("create the table with a partitioner: variable_partitioner= on the strategy "
             "(TF2), partitioner= on get_variable (TF1); a table under 128 KiB is too small "
             "for two pieces of 64 KiB: raise --set rows")
PLACE = ("create the variables inside strategy.scope() (TF2), or under "
         "tf1.device(replica_device_setter(...)) (TF1)")


def check(run: Run) -> str:
    ckpt = run.checkpoint("checkpoints/model")
    weights = {name: variable_key(ckpt, name) for name in ("table", "w", "b")}
    missing = [name for name, found in weights.items() if found is None]
    require(not missing, f"the checkpoint holds no variable {', '.join(missing)}",
            "keep the lab's model: the check reads its table and dense layer")
    table = weights["table"]
    size = int(np.prod(ckpt.entries[table].shape)) * 4
    require(ckpt.entries[table].sliced, f"the table ({size:,} bytes) was saved whole, by one "
            f"task (data shard {ckpt.shard_of(table)}): it was not partitioned", PARTITION)
    pieces = ckpt.slices(table)
    coordinator = ckpt.shard_of(OBJECT_GRAPH) if OBJECT_GRAPH in ckpt.entries else None
    held: dict[int, int] = {}
    for name, entry in ckpt.entries.items():
        if not entry.sliced and name != OBJECT_GRAPH:
            held[entry.shard] = held.get(entry.shard, 0) + entry.size
    ps = run.task_count("ps")
    require(coordinator not in held, "the coordinator's own shard holds variables: they live "
            "on the chief, not on a ps", PLACE)
    require(len(held) <= ps, f"{len(held)} tasks hold variables, but the run has {ps} ps "
            "task(s): some live on the chief or a worker", PLACE)
    spread = {p.shard for p in pieces}
    require(len(spread) == min(ps, len(pieces)),
            f"the table's {len(pieces)} pieces are held by {len(spread)} task(s); with {ps} ps "
            f"tasks they should be spread over {min(ps, len(pieces))}", PLACE)
    share, piece = sum(held.values()) / ps, max(p.size for p in pieces)
    heaviest = max(held.values())
    require(heaviest <= share + piece,
            f"one ps holds {heaviest:,} bytes, more than its share {share:,.0f} plus one piece "
            f"({piece:,})", "place variables by size (the lab's LeastLoaded, or the TF2 "
            "strategy's round robin of equal pieces), not all the big ones on one ps")
    steps = check_steps(run, ckpt)
    ds = data.load(str(run.arg("dataset") or "digits"))
    rows = ckpt.tensor(table)
    ids = tokens.token_ids(ds.x_test, rows.shape[0])
    logits = rows[ids].sum(axis=1) @ ckpt.tensor(weights["w"]) + ckpt.tensor(weights["b"])
    accuracy = float(np.mean(np.argmax(logits, axis=1) == ds.y_test))
    require(accuracy >= MIN_ACCURACY, f"the trained weights reach a test accuracy of "
            f"{accuracy:.4f}, below {MIN_ACCURACY:.2f}", f"train longer (`labctl run "
            f"{run.lab[:2]} --steps N` with a larger N)")
    sizes = ", ".join(f"{n:,}" for _, n in sorted(held.items()))
    return (f"test accuracy {accuracy:.4f} >= {MIN_ACCURACY:.2f} after {steps} steps; the table's "
            f"{len(pieces)} pieces are spread over {len(spread)} ps task(s); bytes per ps: "
            f"{sizes} (share {share:,.0f}, plus one piece {piece:,} at most)")


if __name__ == "__main__":
    main(check)
