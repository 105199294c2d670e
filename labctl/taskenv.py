"""The environment of a lab task, one definition for every target.

A local task is a process that inherits the user's environment; a docker or Kubernetes task is a
container built from a pod spec (the docker target turns the same spec into `docker run -e`).
Both get COMMON; each adds what its place needs. Lab programs also default the two TensorFlow
knobs themselves (labs/labkit/__init__.py), so that a program run by hand behaves the same.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from labctl.labs import labs_dir

COMMON = {
    "PYTHONUNBUFFERED": "1",  # a task's log streams as it is written, not when a buffer fills
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow's C++ INFO/WARNING noise hides the lab's output
}
IN_CONTAINER = {
    "PYTHONDONTWRITEBYTECODE": "1",  # the program mount is read-only
    "HOME": "/tmp",  # uid 1000 has no home in the official TensorFlow image
}
USER_WINS = ("TF_CPP_MIN_LOG_LEVEL",)  # a user may turn TensorFlow's logs back on locally
LOOPBACK = ("127.0.0.1", "localhost")


def local(extra: Mapping[str, str]) -> dict[str, str]:
    """A local process: the user's environment, labs/ importable, COMMON (except what the user
    set of USER_WINS), loopback exempt from gRPC proxies, then `extra`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(labs_dir()), env.get("PYTHONPATH", "")) if p
    )
    env.update(COMMON | {name: env[name] for name in USER_WINS if name in env})
    # gRPC honours https_proxy: with a proxy set, loopback peers would hang silently. Any program
    # (a lab or a `labctl launch` script) reaches its peers on 127.0.0.1 directly. Lab programs
    # exempt their TF_CONFIG hosts themselves too, which is what matters inside a pod.
    bypass = [h for h in env.get("no_grpc_proxy", "").split(",") if h]
    env["no_grpc_proxy"] = ",".join(dict.fromkeys([*bypass, *LOOPBACK]))
    env.update(extra)
    return env


def container(pythonpath: str, tf_config: str | None) -> list[dict[str, str]]:
    """A container's `env` (pod spec form): TF_CONFIG when the task has one, the program mount
    importable, COMMON and IN_CONTAINER."""
    values = {"PYTHONPATH": pythonpath, **COMMON, **IN_CONTAINER}
    if tf_config is not None:
        values = {"TF_CONFIG": tf_config, **values}
    return [{"name": name, "value": value} for name, value in values.items()]
