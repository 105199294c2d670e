"""Lab 11: a client for TensorFlow Serving's REST API, standard library only.

    kubectl port-forward svc/digits-serving 8501 &
    python labs/11-serving-continuous-training/serving_client.py http://127.0.0.1:8501

prints which model versions the server has and what it predicts for a few test digits. The check
uses the same request and reply handling, through the Kubernetes API server's service proxy.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

MODEL = "digits"
SIGNATURE = "serving_default"
INPUT, FEATURES = "pixels", 64
OUTPUTS = ("probabilities", "digit")

# (path below the server root, JSON body or None for GET) -> decoded JSON reply
Transport = Callable[[str, dict[str, Any] | None], dict[str, Any]]


class ServingError(Exception):
    pass


def predict_request(instances: Sequence[Sequence[float]]) -> dict[str, Any]:
    """The REST predict body in row format: one 64-pixel list per image."""
    rows = [[float(v) for v in row] for row in instances]
    for row in rows:
        if len(row) != FEATURES:
            raise ServingError(f"an instance has {len(row)} values; the model takes {FEATURES}")
    return {"signature_name": SIGNATURE, "instances": rows}


def parse_predictions(reply: dict[str, Any]) -> tuple[list[list[float]], list[int]]:
    """Row-format reply of a signature with several outputs: one object per instance."""
    if "error" in reply:
        raise ServingError(str(reply["error"]))
    rows = reply.get("predictions")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ServingError(f"expected predictions as one object per instance, got {reply!r:.200}")
    missing = [o for o in OUTPUTS if rows and o not in rows[0]]
    if missing:
        raise ServingError(f"the reply lacks output(s) {', '.join(missing)}")
    return [list(map(float, r["probabilities"])) for r in rows], [int(r["digit"]) for r in rows]


def parse_status(reply: dict[str, Any]) -> dict[int, str]:
    """GET /v1/models/NAME -> {version: state}, e.g. {2: "AVAILABLE", 1: "END"}."""
    if "error" in reply:
        raise ServingError(str(reply["error"]))
    return {int(v["version"]): str(v["state"]) for v in reply.get("model_version_status", [])}


def status(transport: Transport) -> dict[int, str]:
    return parse_status(transport(f"v1/models/{MODEL}", None))


def predict(transport: Transport, instances: Sequence[Sequence[float]]) -> tuple[
        list[list[float]], list[int]]:
    return parse_predictions(transport(f"v1/models/{MODEL}:predict", predict_request(instances)))


def http_transport(url: str, timeout_s: float = 10.0) -> Transport:
    def call(path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{url.rstrip('/')}/{path}", data=data,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as reply:
                return dict(json.load(reply))
        except urllib.error.HTTPError as err:  # Serving explains errors in a JSON body
            return dict(json.load(err))
    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the server's REST root, e.g. http://127.0.0.1:8501")
    args = parser.parse_args()
    from labkit.data import digits_raw

    transport = http_transport(args.url)
    try:
        print("versions:", status(transport))
        pixels, labels = digits_raw()
        _, predicted = predict(transport, (pixels[:8] / 16.0).tolist())
    except (ServingError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("predicted:", predicted)
    print("labels:   ", labels[:8].tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main())
