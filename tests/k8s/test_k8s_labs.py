"""The cluster labs' programs and checks, as far as they run without a cluster.

- lab 11: the real training program exports versions 1 and 2 (a warm start); the check's
  offline half reads the signature with saved_model_cli and runs the REST client's request and
  reply handling against the SavedModel itself. TF Serving itself runs only on a cluster.
- lab 10: the real program on this GPU-less machine; the check must refuse it, naming the cause.
- lab 08: the check's step logic against cluster states held by the fake API (a mock).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _fake_cluster import FakeApi

REPO = Path(__file__).resolve().parents[2]
LABS = REPO / "labs"


def module(path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import a lab's check.py the way `python check.py` runs it (its folder on sys.path)."""
    monkeypatch.syspath_prepend(str(LABS))
    monkeypatch.syspath_prepend(str(path.parent))
    spec = importlib.util.spec_from_file_location(f"check_{path.parent.name[:2]}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_program(program: Path, output: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(LABS)}
    proc = subprocess.run([sys.executable, str(program), "--output-dir", str(output), *args],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def run_dir(path: Path, meta: dict[str, Any]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "run.json").write_text(json.dumps(meta))
    return path


@pytest.mark.slow
@pytest.mark.labs
def test_lab11_exports_versions_whose_signature_fits_the_rest_client(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = LABS / "11-serving-continuous-training"
    run = run_dir(tmp_path / "run", {"lab": lab.name, "target": "local",
                                     "status": "succeeded"})
    run_program(lab / "train_export.py", run / "output", "--steps", "300")
    run_program(lab / "train_export.py", run / "output", "--steps", "100")
    results = json.loads((run / "output" / "results.json").read_text())
    assert results["version"] == 2 and results["warm_start"] == 1
    assert sorted(p.name for p in (run / "output" / "digits").iterdir()) == ["1", "2"]
    assert results["test_accuracy"] >= 0.95
    check = module(lab / "check.py", monkeypatch)
    from labkit.checks import Run

    _, verdict = check.check_export(Run(run))
    assert verdict == "version 2 exported with signature serving_default"
    # The whole check needs the cluster's server: on a local run it says so.
    with pytest.raises(check.checks.Failed, match="serving is checked on a successful cluster"):
        check.check(Run(run))
    # On the cluster, a server whose image cannot be pulled is named, not a bare 503.
    from labctl.k8s import api as k8s_api

    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "target": "k8s", "namespace": "ns"}))
    fake = FakeApi()
    fake._put({"kind": "Pod", "metadata": {"name": "digits-serving-1", "namespace": "ns",
                                           "labels": {"app": "digits-serving"}},
               "status": {"phase": "Pending", "containerStatuses": [{
                   "image": "tensorflow/serving:1.0.0", "state": {"waiting": {
                       "reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}})
    monkeypatch.setattr(k8s_api, "Api", lambda *_: fake)
    with pytest.raises(check.checks.Failed, match=r"TF Serving pod digits-serving-1 cannot "
                                                  r"start: ImagePullBackOff: Back-off pulling"):
        check.check(Run(run))
    # A reply in the wrong shape is an error, not a wrong prediction.
    with pytest.raises(check.client.ServingError, match="one object per instance"):
        check.client.parse_predictions({"predictions": [[0.1] * 10]})
    assert check.client.parse_status({"model_version_status": [
        {"version": "2", "state": "AVAILABLE"}, {"version": "1", "state": "END"}]}) == {
        2: "AVAILABLE", 1: "END"}


@pytest.mark.slow
@pytest.mark.labs
def test_lab10_check_refuses_a_run_that_saw_no_gpu(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    lab = LABS / "10-gpu-scheduling"
    run = run_dir(tmp_path / "run", {"lab": lab.name, "target": "k8s", "status": "succeeded"})
    run_program(lab / "gpu_train.py", run / "output", "--steps", "60")
    results = json.loads((run / "output" / "results.json").read_text())
    assert results["gpus"] == [] and "CPU:0" in results["device"]
    check = module(lab / "check.py", monkeypatch)
    from labkit.checks import Run

    with pytest.raises(check.checks.Failed, match="TensorFlow saw no GPU inside the pod"):
        check.check(Run(run))
    # The same artifacts from a run on this machine: not the lab, whatever they hold.
    (run / "run.json").write_text(json.dumps({"lab": lab.name, "target": "local",
                                              "status": "succeeded"}))
    with pytest.raises(check.checks.Failed, match="this run used the local target"):
        check.check(Run(run))
    # A skipped run is SKIP, exit 3: never PASS, whatever its output holds.
    skipped = run_dir(tmp_path / "skipped", {"lab": lab.name, "target": "k8s",
                                             "status": "skipped", "reason": "no GPU"})
    proc = subprocess.run([sys.executable, str(lab / "check.py"), str(skipped)],
                          env={**os.environ, "PYTHONPATH": str(LABS)}, capture_output=True,
                          text=True, timeout=60, check=False)
    assert (proc.returncode, proc.stdout.strip()) == (3, "SKIP: no GPU")


# --- lab 08: the check's steps against states held by the fake API -------------------------------
NS = "tf-basics"


def basics_cluster(*, replicas: int = 3, version: str = "v2", revision: str = "2",
                   created: int = 4, answers: int = 2, ip: str = "10.96.0.42") -> FakeApi:
    api = FakeApi()
    put = api._put
    put({"kind": "Pod", "metadata": {"name": "hello-pod", "namespace": NS}, "status": {
        "conditions": [{"type": "Ready", "status": "True"}]}})
    put({"kind": "Deployment", "metadata": {
        "name": "hello", "namespace": NS, "generation": 3,
        "annotations": {"deployment.kubernetes.io/revision": revision}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [
            {"name": "hello", "env": [{"name": "VERSION", "value": version}]}]}}},
        "status": {"readyReplicas": replicas, "updatedReplicas": replicas,
                   "observedGeneration": 3}})
    put({"kind": "ReplicaSet", "metadata": {
        "name": "hello-abc", "namespace": NS, "labels": {"app": "hello"},
        "annotations": {"deployment.kubernetes.io/revision": revision}}})
    put({"kind": "Event", "metadata": {"name": "e1", "namespace": NS}, "reason": "SuccessfulCreate",
         "count": created, "involvedObject": {"name": "hello-abc"}})
    put({"kind": "Service", "metadata": {"name": "hello", "namespace": NS},
         "spec": {"clusterIP": ip}})
    put({"kind": "Job", "metadata": {"name": "dns-client", "namespace": NS},
         "status": {"conditions": [{"type": "Complete", "status": "True"}]}})
    put({"kind": "Pod", "metadata": {"name": "dns-client-x", "namespace": NS,
                                     "labels": {"app": "dns-client"}},
         "status": {"phase": "Succeeded"}})
    api.logs["dns-client-x"] = [f"resolved hello.{NS}.svc to 10.96.0.42"] + [
        f"answer pod=hello-abc-{i} version=v1" for i in range(answers)]
    return api


@pytest.mark.parametrize(("state", "failure"), [
    ({}, None),
    ({"replicas": 2}, "step 3: hello has 2/2 ready replicas, not 3/3"),
    ({"version": "v1", "revision": "1"}, "step 4: the Deployment runs VERSION=v1 at revision 1"),
    ({"created": 3}, "step 5: ReplicaSet hello-abc created 3 pod(s) for 3 replicas"),
    ({"answers": 1}, "step 6: answers came from 1 pod(s), not 2"),
    ({"ip": "10.96.0.7"}, "not the Service's ClusterIP 10.96.0.7"),
])
def test_lab08_check_verifies_each_step(state: dict[str, Any], failure: str | None,
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check = module(LABS / "08-kubernetes-basics" / "check.py", monkeypatch)
    api = basics_cluster(**state)
    if failure is None:
        assert "hello scaled to 3, rolled out to v2" in check._steps(api, NS)
    else:
        with pytest.raises(check.checks.Failed) as caught:
            check._steps(api, NS)
        assert failure in caught.value.reason
