"""Lab 16: the gate. Publishes a candidate SavedModel as the next version of the served model only
when it beats the version being served on the same held-out digits, and records every decision.

    python gate.py --output-dir DIR --candidate DIR/candidates/ID [--margin M]

The rule: publish when candidate accuracy > served accuracy + margin (margin 0: strictly
better; a tie keeps the served version). With nothing served, the candidate becomes version 1.
Both models are judged the way TF Serving runs them: through their serving_default signature.

Publishing is one rename of the candidate's folder to digits/<N+1> on the same volume: TF
Serving, polling digits/, sees the whole version or none. A rejected candidate stays in
candidates/. Each decision appends one JSON line to gate.jsonl: time, candidate, served
version, both accuracies, margin, decision ("published" or "rejected"), published version
(null when rejected). retrain.py calls `gate()` after training; run alone, this file gates a
candidate saved earlier.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from labkit import data
from labkit.cluster import config_error

LOG = "gate.jsonl"
MODELS = "digits"  # TF Serving's model base path below --output-dir


def accuracy(saved: Path, dataset: data.Dataset) -> float:
    """The SavedModel's accuracy on the held-out digits, through its serving signature."""
    import tensorflow as tf  # here, not at the top: bad options fail before TensorFlow loads
    from labkit import serving

    serve = tf.saved_model.load(str(saved)).signatures[serving.SIGNATURE]
    digits = serve(pixels=tf.constant(dataset.x_test))["digit"].numpy()
    return float((digits == dataset.y_test).mean())


def better(candidate: float, served: float | None, margin: float) -> bool:
    """The gate's rule: nothing served yet, or strictly more than the served accuracy + margin."""
    return served is None or candidate > served + margin


def gate(output_dir: Path, candidate: Path, margin: float = 0.0) -> dict[str, Any]:
    """Judge `candidate` against the newest published version; publish it or keep it out; log
    the decision. The decision record."""
    if not (candidate / "saved_model.pb").is_file():
        config_error(f"no SavedModel at {candidate}")
    if not candidate.resolve().is_relative_to(output_dir.resolve()):
        # Publishing is a rename, atomic only within one file system: the volume.
        config_error(f"the candidate {candidate} must lie under --output-dir {output_dir}")
    name = str(candidate.resolve().relative_to(output_dir.resolve()))
    from labkit import serving  # TensorFlow: once the invocation is known to be good

    dataset = data.load("digits")
    base = output_dir / MODELS
    base.mkdir(parents=True, exist_ok=True)
    published = serving.versions(base)
    served = published[-1] if published else None
    mine = accuracy(candidate, dataset)
    theirs = accuracy(base / str(served), dataset) if served else None
    version = None
    if better(mine, theirs, margin):
        version = (served or 0) + 1
        try:
            candidate.rename(base / str(version))
        except OSError as err:  # rename() never replaces a version (a non-empty folder)
            print(f"error: cannot publish {name} as version {version}: {err.strerror}; did "
                  "another gate publish it meanwhile?", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "candidate": name,
        "served_version": served,
        "candidate_accuracy": round(mine, 6),
        "served_accuracy": None if theirs is None else round(theirs, 6),
        "margin": margin,
        "decision": "published" if version else "rejected",
        "published_version": version,
    }
    with (output_dir / LOG).open("a") as log:  # one writer at a time: concurrencyPolicy Forbid
        log.write(json.dumps(record) + "\n")
    return record


def describe(record: dict[str, Any]) -> str:
    served = (f"version {record['served_version']} ({record['served_accuracy']:.4f})"
              if record["served_version"] else "nothing served")
    verdict = (f"published as version {record['published_version']}"
               if record["published_version"] else "rejected, still serving version "
               f"{record['served_version']}")
    return (f"gate: candidate {record['candidate']} ({record['candidate_accuracy']:.4f}) vs "
            f"{served}: {verdict}")


if __name__ == "__main__":
    from labkit import cli

    args = cli.parse(__doc__, training=False, paths={"candidate": "the candidate's SavedModel"},
                     fractions={"margin": (0.0, "accuracy the candidate must gain")})
    print(describe(gate(args.output_dir, args.candidate, args.margin)), flush=True)
