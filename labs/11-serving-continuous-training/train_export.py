"""Lab 11: continuous training. Each run trains the digits MLP, starting from the newest exported
version when there is one, and exports the result as the next version:

    --output-dir/digits/<version>/   a SavedModel, signature serving_default:
                                     pixels float32 [N, 64] -> probabilities [N, 10], digit [N]

That folder is TF Serving's model base path: the server loads each new version by itself. A
version is written under a temporary name and renamed when complete, so the server never sees
half a model. results.json keeps a sample of test images with this model's own predictions, for
the check to compare with the server's answers.
"""

import labkit  # noqa: F401  (first: start time, quiet TensorFlow start-up)
from labkit import cli, report
from labkit.cluster import config_error

args = cli.parse(__doc__, steps=600)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402  (after option parsing: bad options fail fast)
from labkit import data, serving  # noqa: E402

SAMPLE = 8  # test images kept with their predictions

base = args.output_dir / "digits"
base.mkdir(parents=True, exist_ok=True)
versions = serving.versions(base)
version = (versions[-1] if versions else 0) + 1

dataset = data.load(args.dataset)
if dataset.features != 64:
    config_error("the served model takes 8x8 digits: use --dataset digits")
net = serving.Digits(dataset.features, seed=version)
if versions:  # continuous training: go on from the newest version
    net.warm_start(base / str(versions[-1]))
    print(f"warm start from version {versions[-1]}", flush=True)

progress = serving.train(net, dataset, steps=args.steps, batch_size=args.batch_size,
                         learning_rate=args.learning_rate, eval_every=args.eval_every,
                         seed=version)
serving.save(net, base / str(version))
print(f"exported version {version} to {base / str(version)}", flush=True)

sample = np.asarray(dataset.x_test[:SAMPLE], dtype=np.float32)
own = net.serve(tf.constant(sample))
report.write_results(
    args.output_dir, "11-serving-continuous-training", progress, dataset=args.dataset,
    test_accuracy=round(net.test_accuracy(dataset), 4),
    version=version, export=f"digits/{version}", warm_start=versions[-1] if versions else None,
    sample={"instances": sample.round(6).tolist(),
            "probabilities": own["probabilities"].numpy().round(6).tolist(),
            "digits": own["digit"].numpy().tolist()},
)
