"""Lab 16 check: every gate decision holds against the models themselves, and TF Serving's own
status shows that only the published versions were ever served.

From the run's output (the volume, copied back by labctl when the run ended):
1. gate.jsonl records a published version and, after it, a rejected candidate;
2. the version folders are exactly the published versions, each a complete SavedModel, nothing
   else in digits/; the rejected candidate is still in candidates/ and its weights are no
   version's (it was kept out, not published under another number);
3. each decision is right, on accuracies computed here (numpy, the SavedModels' weights, the
   held-out digits): a published candidate beat the version it replaced by more than the
   margin, a rejected one did not, the last rejected one is really worse than the version it
   faced, and every accuracy the gate logged is the one computed here.
From TF Serving, through the API server's service proxy (GET /v1/models/digits):
4. the versions it reports are exactly the published ones, the newest AVAILABLE and every older
   one unloaded (END): it switched once per publication, and the rejection changed nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from labkit import checkpoint, checks
from labkit.checks import Run, require

# Lab 11's REST client: the same server, the same model status reply.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "11-serving-continuous-training"))
import serving_client as client

SERVICE, PORT = "digits-serving", 8501
LOG, MODELS = "gate.jsonl", "digits"
GOOD = "labctl run 16 --target k8s"
WORSE = "labctl run 16 --target k8s --set bad_labels=0.5"
TOLERANCE = 1e-5  # the gate rounds accuracies to 6 places; one digit of 360 is 0.0028
FIELDS = ("time", "candidate", "served_version", "candidate_accuracy", "served_accuracy",
          "margin", "decision", "published_version")  # one gate decision (gate.py)


def decisions(run: Run) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(run.text(LOG).splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        require(isinstance(record, dict) and set(FIELDS) <= record.keys()
                and record["decision"] in ("published", "rejected"),
                f"{LOG} line {number} is not a gate decision: {line[:80]!r}",
                "only gate.py writes gate.jsonl: do not edit it by hand")
        records.append(record)
    return records


def weights(run: Run, saved: str) -> dict[str, np.ndarray]:
    prefix = run.output / saved / "variables" / "variables"
    require(Path(f"{prefix}.index").is_file() and (run.output / saved / "saved_model.pb").is_file(),
            f"{saved} is not a complete SavedModel", "a model is saved under a temporary name and "
            "renamed when complete (labkit.serving.save); was the volume copied back? see "
            "`labctl logs 16`")
    return checks.mlp_weights(checkpoint.Checkpoint(prefix))


def check_gate(run: Run) -> tuple[int, str]:
    """Steps 1-3 on the copied volume: the version served at the end, and a summary."""
    log = decisions(run)
    versions = [d["published_version"] for d in log if d["decision"] == "published"]
    require(versions, f"{LOG} records no published version", f"train the first one: `{GOOD}`")
    require(versions == list(range(1, len(versions) + 1)),
            f"the gate published versions {versions}, not 1, 2, ... in order",
            "each publication is the served version + 1 (gate.py)")
    base = run.output / MODELS
    on_disk = sorted(p.name for p in base.iterdir()) if base.is_dir() else []
    require(on_disk == [str(v) for v in versions],
            f"digits/ holds {on_disk}, the gate published {versions}",
            "only the gate publishes, by renaming a complete candidate into digits/")
    models = {v: weights(run, f"{MODELS}/{v}") for v in versions}
    accuracy = {v: checks.test_accuracy(run, w) for v, w in models.items()}
    served: int | None = None
    scores = []  # (decision, candidate accuracy, served accuracy), as computed here
    for d in log:
        theirs = accuracy[served] if served else None
        vs = f"version {served}'s {theirs:.4f}" if theirs is not None else "nothing served"
        if d["decision"] == "published":
            mine = accuracy[d["published_version"]]
        else:
            kept = weights(run, d["candidate"])
            mine = checks.test_accuracy(run, kept)
            same = [v for v, w in models.items() if all(np.array_equal(w[k], kept[k]) for k in w)]
            require(not same, f"the rejected candidate {d['candidate']} is published all the "
                    f"same, as version {same[0] if same else None}",
                    "a rejected candidate must stay in candidates/: gate.py renames only a winner")
        require(d["served_version"] == served,
                f"the gate judged {d['candidate']} against version {d['served_version']}, but "
                f"version {served} was being served", "the gate compares with the newest version")
        require(abs(d["candidate_accuracy"] - mine) <= TOLERANCE and (theirs is None or abs(
                d["served_accuracy"] - theirs) <= TOLERANCE),
                f"the gate logged {d['candidate_accuracy']} vs {d['served_accuracy']} for "
                f"{d['candidate']}; the models score {mine:.6f} vs {vs}",
                "the gate must judge both models on the same held-out digits")
        wins = theirs is None or mine > theirs + float(d.get("margin") or 0.0)
        if d["decision"] == "published":
            require(wins, f"version {d['published_version']} was published with accuracy "
                    f"{mine:.4f}, not better than {vs}",
                    "the gate must publish only a candidate that beats the served version")
            served = d["published_version"]
        else:
            require(not wins, f"{d['candidate']} was rejected with accuracy {mine:.4f}, better "
                    f"than {vs}", "the gate must publish a candidate "
                    "that beats the served version")
        scores.append((d, mine, theirs))
    after = scores[max(i for i, d in enumerate(log) if d["decision"] == "published") + 1:]
    require(after, f"no candidate was rejected after version {served} was published: nothing "
            "shows the gate keeping a worse model out", f"train a worse candidate: `{WORSE}`")
    rejected, mine, theirs = after[-1]
    require(mine < theirs, f"the rejected candidate {rejected['candidate']} scores {mine:.4f}, "
            f"not below version {served}'s {theirs:.4f}: it shows nothing about the gate",
            f"build a worse candidate: `{WORSE}`")
    return int(versions[-1]), (
        f"gate: version {served} published ({accuracy[versions[-1]]:.4f}), then "
        f"{rejected['candidate']} rejected ({mine:.4f} < {theirs:.4f}) and kept out of digits/ "
        f"({len(log)} decision(s), accuracies recomputed)")


def check_serving(states: dict[int, str], published: int) -> str:
    """Step 4: TF Serving's versions against the gate's publications 1..published."""
    versions = list(range(1, published + 1))
    strangers = sorted(set(states) - set(versions))
    require(not strangers, f"TF Serving has served version(s) {strangers}, which the gate "
            f"never published (it published {versions})",
            "only the gate may write digits/: was a version copied in by hand?")
    require(states.get(published) == "AVAILABLE",
            f"TF Serving reports {states}, not version {published} AVAILABLE",
            "the server polls the volume every 2 s: check again in a moment")
    live = sorted(v for v, s in states.items() if s != "END" and v != published)
    require(not live, f"older version(s) {live} are not unloaded: {states}",
            "the default version policy serves the newest version only")
    require(sorted(states) == versions, f"TF Serving reports versions {sorted(states)}, the "
            f"gate published {versions}", "a version published within one poll of the next "
            "is never loaded: leave the server time between cycles")
    return f"TF Serving reports {states}: it switched only to what the gate published"


def check(run: Run) -> str:
    newest, gate = check_gate(run)
    meta = run.meta
    require(meta.get("target") == "k8s", f"this run used the {meta.get('target')} target: TF "
            "Serving runs only on the cluster", f"`{GOOD}`")
    from labctl.k8s.api import Api, ClusterError

    namespace = meta["namespace"]
    try:
        api = Api(meta.get("kubeconfig") or None)
        states = client.status(lambda path, body: api.proxy(namespace, SERVICE, PORT, path, body))
    except (ClusterError, client.ServingError) as err:
        raise checks.Failed(f"cannot ask TF Serving: {err}",
                            f"`kubectl -n {namespace} get pods,svc`; is {SERVICE} Ready?") from None
    return f"{gate}; {check_serving(states, newest)}"


if __name__ == "__main__":
    checks.main(check)
