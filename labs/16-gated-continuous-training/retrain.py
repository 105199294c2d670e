"""Lab 16: one cycle of gated continuous training, what the CronJob runs. Trains a candidate from
the version being served on this cycle's data, saves it under candidates/, and lets the gate
(gate.py) publish it as the next version only if it beats the served one:

    --output-dir/digits/<N>/        the published versions: TF Serving's model base path
    --output-dir/candidates/<id>/   a candidate until the gate publishes it; rejected ones stay
    --output-dir/gate.jsonl         one line per decision

The digits set has no stream of new images: each cycle draws its own sample of the training
half (seeded by the cycle's number) in their place. --bad-labels F gives a fraction F of it the
wrong label (an off-by-one labelling bug), to build a candidate that must be rejected.
"""

import labkit  # noqa: F401  (first: start time, quiet TensorFlow start-up)
from labkit import cli, report

args = cli.parse(__doc__, steps=300, fractions={
    "bad-labels": (0.0, "fraction of this cycle's training labels made wrong"),
    "margin": (0.0, "accuracy a candidate must gain over the served version")})

import dataclasses  # noqa: E402
import secrets  # noqa: E402
import time  # noqa: E402

import gate  # noqa: E402
import numpy as np  # noqa: E402
from labkit import data, serving  # noqa: E402  (TensorFlow: after option parsing)
from labkit.cluster import config_error  # noqa: E402

if args.dataset != "digits":
    config_error("the served model takes 8x8 digits: use --dataset digits")
dataset = data.load(args.dataset)
log = args.output_dir / gate.LOG
cycle = 1 + (len(log.read_text().splitlines()) if log.is_file() else 0)
if args.bad_labels:
    labels = dataset.y_train.copy()
    wrong = np.random.default_rng(cycle).random(len(labels)) < args.bad_labels
    labels[wrong] = (labels[wrong] + 1) % 10
    dataset = dataclasses.replace(dataset, y_train=labels)
    print(f"cycle {cycle}: {int(wrong.sum())} of {len(labels)} training labels are wrong",
          flush=True)

published = serving.versions(args.output_dir / gate.MODELS)
net = serving.Digits(dataset.features, seed=cycle)
if published:  # continuous training: go on from the version being served
    net.warm_start(args.output_dir / gate.MODELS / str(published[-1]))
    print(f"warm start from version {published[-1]}", flush=True)
progress = serving.train(net, dataset, steps=args.steps, batch_size=args.batch_size,
                         learning_rate=args.learning_rate, eval_every=args.eval_every,
                         seed=cycle)

candidate = args.output_dir / "candidates" / (
    time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{secrets.token_hex(2)}")
candidate.parent.mkdir(parents=True, exist_ok=True)
serving.save(net, candidate)
print(f"saved candidate {candidate}", flush=True)
decision = gate.gate(args.output_dir, candidate, args.margin)
print(gate.describe(decision), flush=True)
report.write_results(args.output_dir, "16-gated-continuous-training", progress,
                     dataset=args.dataset, test_accuracy=round(net.test_accuracy(dataset), 4),
                     cycle=cycle, bad_labels=args.bad_labels, gate=decision)
