"""TF_CONFIG: where this task sits in the cluster. Validated here, without importing TensorFlow.

The format is the TFJob convention that Kubernetes pods get as well:
`{"cluster": {"ps": ["host:port"], "worker": [...]}, "task": {"type": "worker", "index": 0}}`.
Anything wrong is a one-line error and exit code 2: restarting the task cannot fix it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from typing import NoReturn

JOB_TYPES = ("chief", "ps", "worker", "evaluator")
EXAMPLE = ('{"cluster": {"ps": ["host:2222"], "worker": ["host:2223"]}, '
           '"task": {"type": "worker", "index": 0}}')
# host:port, the host a name, an IPv4 address or a bracketed IPv6 address.
ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def config_error(message: str) -> NoReturn:
    """A problem no restart can fix: one line on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


@dataclass(frozen=True)
class Task:
    type: str
    index: int

    @property
    def name(self) -> str:
        """`worker:1`, as labctl names tasks (`--kill worker:1@300`, `--task worker:1`)."""
        return f"{self.type}:{self.index}"

    @property
    def stem(self) -> str:
        """`worker-1`, as files are named (`tasks/worker-1.json`, `logs/worker-1.log`)."""
        return f"{self.type}-{self.index}"

    @property
    def device(self) -> str:
        return f"/job:{self.type}/task:{self.index}"


@dataclass(frozen=True)
class TFConfig:
    cluster: dict[str, list[str]]
    task: Task

    def tasks(self, job: str) -> list[Task]:
        return [Task(job, i) for i in range(len(self.cluster.get(job, [])))]

    def count(self, job: str) -> int:
        return len(self.cluster.get(job, []))


def load(required: set[str], optional: frozenset[str] = frozenset()) -> TFConfig:
    """Read TF_CONFIG; the lab names the job types it needs and those it can do without."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        config_error(
            "TF_CONFIG is not set: this program is one task of a TensorFlow cluster; "
            f"start it with `labctl run` or set TF_CONFIG like {EXAMPLE}"
        )
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as err:
        config_error(f"TF_CONFIG is not valid JSON ({err.msg} at character {err.pos}); "
                     f"it should look like {EXAMPLE}")
    return parse(doc, required, optional)


def parse(doc: object, required: set[str], optional: frozenset[str] = frozenset()) -> TFConfig:
    if not isinstance(doc, dict) or not isinstance(doc.get("cluster"), dict):
        config_error(f'TF_CONFIG needs a "cluster" object of job lists, like {EXAMPLE}')
    task = doc.get("task")
    if not isinstance(task, dict):
        config_error('TF_CONFIG needs a "task" object: {"type": "worker", "index": 0}')
    cluster: dict[str, list[str]] = {}
    for job, addresses in doc["cluster"].items():
        if job not in JOB_TYPES:
            config_error(f"TF_CONFIG: unknown job type {job!r} in cluster "
                         f"(job types are {', '.join(JOB_TYPES)})")
        if job not in required | optional:
            config_error(f"TF_CONFIG: this lab has no {job!r} job; "
                         f"it uses {', '.join(sorted(required | optional))}")
        if not isinstance(addresses, list) or not addresses:
            config_error(f'TF_CONFIG: cluster "{job}" must be a non-empty list of "host:port"')
        for address in addresses:
            match = ADDRESS.match(address) if isinstance(address, str) else None
            if match is None or not 0 < int(match.group(2)) < 65536:
                config_error(f'TF_CONFIG: {address!r} in cluster "{job}" is not "host:port"')
        cluster[job] = addresses
    for job in sorted(required - cluster.keys()):
        config_error(f'TF_CONFIG: this lab needs a "{job}" job in the cluster')
    if len(cluster.get("chief", [])) > 1:
        config_error('TF_CONFIG: a cluster has at most one "chief" task')
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        config_error(f"TF_CONFIG: task type {kind!r} is not a job of the cluster "
                     f"({', '.join(cluster)})")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[kind]):
        config_error(f"TF_CONFIG: task index {index!r} is out of range: the cluster has "
                     f"{len(cluster[kind])} {kind} task(s), indexed from 0")
    _bypass_proxy(cluster)
    return TFConfig(cluster, Task(kind, index))


def _bypass_proxy(cluster: dict[str, list[str]]) -> None:
    """Tasks talk to each other directly. gRPC would send them through an https_proxy set in
    the environment (common behind corporate proxies), where they hang: exempt their hosts."""
    hosts = {address.rsplit(":", 1)[0].strip("[]") for addresses in cluster.values()
             for address in addresses}
    # gRPC reads this lowercase name (then no_proxy); an uppercase one would be ignored.
    current = [h for h in os.environ.get("no_grpc_proxy", "").split(",") if h]  # noqa: SIM112
    os.environ["no_grpc_proxy"] = ",".join(sorted(set(current) | hosts))  # noqa: SIM112
