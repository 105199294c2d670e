"""Lab 13: fault tolerance in TF2: all-reduce training that resumes from its last checkpoint,
and a sidecar evaluator.

Training is lab 07's (MultiWorkerMirroredStrategy), plus a checkpoint every
--checkpoint-every steps and a restore when a worker starts. When a worker is lost, the others
fail on the next all-reduce; all of them are restarted (by labctl, or by Kubernetes) and go on
from the last checkpoint instead of step 0. Saving is a collective too, so every worker saves:
worker 0 into checkpoints/, the others into a scratch directory they then delete (the pattern of
TensorFlow's multi-worker tutorial). Every checkpoint is kept, for the evaluator and the check.

The evaluator is not part of the training cluster (only its own TF_CONFIG lists it). It waits
for each new checkpoint, evaluates it on the held-out data, writes the accuracy as a
TensorBoard scalar (eval/) and to eval/ckpt-N.json, and ends with the last step's checkpoint.
"""

import shutil

import labkit  # noqa: F401  (first: start time, quiet TensorFlow start-up)
from labkit import cli, cluster, report

args = cli.parse(__doc__, steps=500,
                 numbers={"checkpoint-every": (50, "steps between checkpoints")})
cfg = cluster.load(required={"worker"}, optional=frozenset({"evaluator"}))

import tensorflow as tf  # noqa: E402  (after option parsing: bad input fails fast)

CHECKPOINTS = args.output_dir / "checkpoints"
STEP = "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"  # the optimizer's step counter
if cfg.task.type == "worker":
    # Before any other TensorFlow op: the strategy configures this process's runtime.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402
from labkit import data, mirrored, model  # noqa: E402

ds = data.load(args.dataset)


def evaluate_checkpoints() -> None:
    """The sidecar evaluator: every new checkpoint until the one of the last step."""
    net = model.keras_mlp(ds.features)
    weights = tf.train.Checkpoint(weights=model.keras_weights(net))
    events = tf.summary.create_file_writer(str(args.output_dir / "eval"))
    # No new checkpoint for 10 minutes: training is gone; end rather than wait forever. (No
    # timeout_fn: the iterator asks it after every checkpoint whether training is over.)
    for path in tf.train.checkpoints_iterator(CHECKPOINTS, timeout=600):
        weights.restore(path).expect_partial()  # the weights alone, not the optimizer
        step = int(tf.train.load_variable(path, STEP))
        _, accuracy = model.loss_and_accuracy(net(ds.x_test), ds.y_test)
        with events.as_default():
            tf.summary.scalar("accuracy", accuracy, step=step)
        events.flush()
        name = path.rsplit("/", 1)[-1]
        report.write_json(args.output_dir / "eval" / f"{name}.json",
                          {"checkpoint": name, "step": step, "accuracy": float(accuracy)})
        print(f"evaluated {name}: step {step}, test accuracy {float(accuracy):.4f}", flush=True)
        if step >= args.steps:
            return
    report.exit_now(1)  # timed out before the last checkpoint


if cfg.task.type == "evaluator":
    evaluate_checkpoints()
    report.exit_now()

global_batch = args.batch_size * cfg.count("worker")
with strategy.scope():  # variables created here are mirrored on every worker
    net = model.keras_mlp(ds.features)
    optimizer = keras.optimizers.Adam(args.learning_rate)
    optimizer.build(net.trainable_variables)  # its step counter exists before a restore
checkpoint = tf.train.Checkpoint(weights=model.keras_weights(net), optimizer=optimizer)
chief = cfg.task.index == 0
# Every worker saves (a collective); only worker 0's copy is kept.
scratch = args.output_dir / "scratch" / cfg.task.stem
saves = tf.train.CheckpointManager(checkpoint, CHECKPOINTS if chief else scratch,
                                   max_to_keep=None)
checkpoint.restore(tf.train.latest_checkpoint(CHECKPOINTS))  # None on a first start
start = int(optimizer.iterations.numpy())
if start:
    print(f"restored the checkpoint of step {start}", flush=True)


train_step = mirrored.train_step(strategy, net, optimizer, global_batch)


def train(progress: report.Progress) -> None:
    batches = mirrored.batches(strategy, ds, global_batch)
    for step in range(start + 1, args.steps + 1):
        loss = train_step(batches)
        last = step == args.steps
        if step % args.checkpoint_every == 0 or last:
            saves.save(checkpoint_number=step)
            if not chief:
                shutil.rmtree(scratch, ignore_errors=True)
        accuracy = None
        if step % args.eval_every == 0 or last:
            _, accuracy = model.loss_and_accuracy(net(ds.x_test), ds.y_test)
        progress.update(step, loss, accuracy, force=last)


progress = report.Progress()
try:
    train(progress)
except tf.errors.OpError as err:  # a lost peer aborts the collectives of every worker
    cause = next((line.strip() for line in (err.message or "").splitlines()
                  if "aborted by" in line), type(err).__name__)
    print(f"the all-reduce failed ({cause}): exiting, to be restarted from the last "
          "checkpoint", flush=True)
    report.exit_now(1)

print(f"test accuracy {progress.accuracy:.4f} after step {args.steps} (this attempt started at "
      f"step {start + 1})", flush=True)
report.write_task(args.output_dir, cfg.task.stem, progress, args.steps - start)
if chief:
    report.write_results(args.output_dir, "13-fault-tolerance", progress, dataset=args.dataset,
                         test_accuracy=progress.accuracy, workers=cfg.count("worker"),
                         resumed_from=start)
report.exit_now()
