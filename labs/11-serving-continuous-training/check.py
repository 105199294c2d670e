"""Lab 11 check: the newest export is a complete SavedModel whose signature fits the REST client,
TF Serving answers REST predict through its Service, it switched to this run's version without
a restart, and its predictions match the exported model's own on a sample of test digits.

The first part needs no cluster: saved_model_cli reads the signature, and the client's request and
reply handling is run against the SavedModel itself (`serve_locally` builds the reply a server
builds: row format, one object per instance). The second part asks the server on the cluster,
through the API server's service proxy.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import serving_client as client
from labkit import checks
from labkit.checks import Run, require

SERVICE, PORT = "digits-serving", 8501
TOLERANCE = 1e-4
AGAIN = "labctl run 11 --target k8s"
# (dtype, shape) per tensor of the serving signature, as saved_model_cli prints them
WANTED = {
    ("input", client.INPUT): ("DT_FLOAT", f"(-1, {client.FEATURES})"),
    ("output", "probabilities"): ("DT_FLOAT", "(-1, 10)"),
    ("output", "digit"): ("DT_INT32", "(-1)"),
}


def signature(export: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """The serving_default signature as saved_model_cli shows it."""
    cli = Path(sys.executable).with_name("saved_model_cli")
    proc = subprocess.run([str(cli), "show", "--dir", str(export), "--tag_set", "serve",
                           "--signature_def", client.SIGNATURE],
                          capture_output=True, text=True, check=False)
    require(proc.returncode == 0, f"saved_model_cli cannot read {export}",
            f"the export is incomplete: {proc.stderr.strip().splitlines()[-1:]}")
    found = {}
    pattern = r"(input|output)s\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\([^)]*\))"
    for kind, name, dtype, shape in re.findall(pattern, proc.stdout):
        found[(kind, name)] = (dtype, shape)
    return found


def serve_locally(export: Path, request: dict[str, Any]) -> dict[str, Any]:
    """What TF Serving's REST predict returns for `request`, computed from the SavedModel."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(export)).signatures[request["signature_name"]]
    (name, spec), = fn.structured_input_signature[1].items()
    batch = tf.constant(request["instances"], dtype=spec.dtype)
    require(spec.shape.is_compatible_with(batch.shape),
            f"the client sends shape {batch.shape}, the signature takes {spec.shape}",
            "fix predict_request in serving_client.py")
    outputs = {k: v.numpy().tolist() for k, v in fn(**{name: batch}).items()}
    return {"predictions": [{k: v[i] for k, v in outputs.items()}
                            for i in range(len(request["instances"]))]}


def same(sample: dict[str, Any], probabilities: list[list[float]], digits: list[int]) -> bool:
    return digits == sample["digits"] and all(
        abs(a - b) <= TOLERANCE
        for mine, theirs in zip(probabilities, sample["probabilities"], strict=True)
        for a, b in zip(mine, theirs, strict=True))


def check_export(run: Run) -> tuple[dict[str, Any], str]:
    results = run.results()
    export = run.output / str(results.get("export"))
    require((export / "saved_model.pb").is_file(), f"no SavedModel at {results.get('export')}",
            "the training run did not export: read `labctl logs 11`")
    found = signature(export)
    for key, wanted in WANTED.items():
        require(found.get(key) == wanted,
                f"signature {client.SIGNATURE}: {key[0]} {key[1]} is {found.get(key)}, the "
                f"client expects {wanted}", "export with the signature train_export.py defines")
    sample = results["sample"]
    reply = serve_locally(export, client.predict_request(sample["instances"]))
    require(same(sample, *client.parse_predictions(reply)),
            "the model's REST-format predictions differ from its own",
            "the REST client and the export disagree: compare serving_client.py and the "
            "signature")
    return results, f"version {results['version']} exported with signature {client.SIGNATURE}"


def serving_pod(api: Any, namespace: str) -> dict[str, Any]:
    pods = api.list("Pod", namespace, "app=digits-serving")
    require(pods, f"no TF Serving pod in namespace {namespace}",
            f"it is created with the first run: `{AGAIN}`")
    return pods[0]


def check(run: Run) -> str:
    results, exported = check_export(run)
    meta = run.meta
    require(meta.get("target") == "k8s" and meta.get("status") == "succeeded",
            f"serving is checked on a successful cluster run; this one: {meta.get('target')}, "
            f"{meta.get('status')}", f"`{AGAIN}`")
    from labctl.k8s.api import Api, ClusterError
    from labctl.k8s.status import waiting
    from labctl.k8s.waits import BAD_WAITING, PULL_WAITING

    namespace, version = meta["namespace"], int(results["version"])
    try:
        api = Api(run.meta.get("kubeconfig") or None)

        def transport(path: str, body: dict[str, Any] | None) -> dict[str, Any]:
            return api.proxy(namespace, SERVICE, PORT, path, body)

        pod = serving_pod(api, namespace)
        stuck = waiting(pod)
        if stuck and stuck[0] in PULL_WAITING | BAD_WAITING:
            raise checks.Failed(f"TF Serving pod {pod['metadata']['name']} cannot start: "
                                f"{stuck[0]}: {stuck[1]}",
                                f"is the image {stuck[2]} on the nodes? "
                                f"`kubectl -n {namespace} describe pod "
                                f"{pod['metadata']['name']}`")
        states = client.status(transport)
        probabilities, digits = client.predict(transport, results["sample"]["instances"])
    except (ClusterError, client.ServingError) as err:
        raise checks.Failed(f"cannot ask TF Serving: {err}",
                            f"`kubectl -n {namespace} get pods,svc`; is {SERVICE} Ready?") from None
    require(states.get(version) == "AVAILABLE",
            f"the server's versions are {states}, not version {version} AVAILABLE",
            "Serving polls the volume every 2 s: wait a moment and check again")
    require(version >= 2, "only one version exists: nothing has switched yet",
            f"train again (`{AGAIN}`); the server picks up version 2 by itself")
    require(all(s != "AVAILABLE" for v, s in states.items() if v < version),
            f"older versions are still served: {states}", "the default policy serves the latest")
    restarts = sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses", []))
    started = datetime.fromisoformat(pod["status"]["startTime"].replace("Z", "+00:00"))
    run_started = datetime.strptime(meta["started"], "%Y-%m-%dT%H:%M:%S%z")
    require(restarts == 0 and started < run_started,
            f"the serving pod started at {started} with {restarts} restart(s), not before this "
            f"run ({run_started})", "the switch must happen in a running server: do not "
            "restart it between runs")
    require(same(results["sample"], probabilities, digits),
            f"the server predicts {digits}, the exported model {results['sample']['digits']}",
            "the server may still hold the previous version: check again in a few seconds")
    return (f"{exported}; TF Serving switched to it without a restart (versions {states}); "
            f"REST predictions match the model's own on {len(digits)} digits")


if __name__ == "__main__":
    checks.main(check)
