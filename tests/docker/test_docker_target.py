"""`labctl run --target docker`: the rendered pod specs as containers.

The translation is unit-tested without Docker; the end-to-end tests run labs 04 and 05 as real
TensorFlow containers over Docker's DNS from the specs the cluster gets, then check them, and
prove that a killed container is restarted and that Ctrl-C leaves no container or network.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _manifests import by_kind, load, render
from _signals import sigint_as_from_a_terminal

from labctl import docker_target as dt
from labctl import rundir
from labctl.k8s import manifests as m
from labctl.plan import plan_lab
from labctl.rundir import RunDir

REPO = Path(__file__).resolve().parents[2]
LABCTL = [str(Path(sys.executable).parent / "labctl")]


def test_pods_become_docker_runs_with_service_names_as_aliases(fake_labs: Path,
                                                               tmp_path: Path) -> None:
    docs = render(load("04"), run_id="r1")
    run = RunDir(tmp_path / "run")
    (run.path / "output").mkdir(parents=True)
    runs = {r.task.name: r for r in dt.pod_runs(docs, run, "local/tf-lab:test")}
    assert set(runs) == {"ps:0", "worker:0", "worker:1"}
    jobs = by_kind(docs, "Job")
    for name, pod_run in runs.items():
        argv = pod_run.argv
        job = jobs[pod_run.job]
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert argv[:2] == ["--init", "--rm"]  # an init passes SIGTERM on (pitfall 11)
        # The Service's DNS name, exactly as in every task's TF_CONFIG.
        assert pod_run.alias == f"{pod_run.job}.tf-lab.svc"
        assert argv[argv.index("--network-alias") + 1] == pod_run.alias
        tf_config = next(e["value"] for e in container["env"] if e["name"] == "TF_CONFIG")
        assert f"TF_CONFIG={tf_config}" in argv
        assert any(pod_run.alias + ":2222" in h for hs in json.loads(tf_config)["cluster"]
                   .values() for h in hs)
        assert f"{run.path}/configmaps/fake-async-programs:/lab:ro" in argv
        assert f"{run.output}:/output" in argv
        assert "--read-only" in argv and argv[
            argv.index("--cap-drop"):argv.index("--cap-drop") + 2] == ["--cap-drop", "ALL"]
        assert argv[argv.index("--cpus") + 1] == f"{min(2.0, os.cpu_count() or 1):g}"
        assert argv[argv.index("--memory") + 1] == "2g"
        tail = argv[argv.index("--entrypoint"):]
        assert tail == ["--entrypoint", "python3", "local/tf-lab:test",
                        "/lab/04-fake-async/train.py", *container["args"]]
        assert f"labctl/task={name.replace(':', '-')}" in argv
    # The ConfigMap's items are files at their paths, with the ConfigMap's content.
    files = run.path / "configmaps" / "fake-async-programs"
    assert (files / "04-fake-async" / "train.py").read_text() == "print('PROGRESS step=1')\n"
    assert (files / "labkit" / "__init__.py").read_text() == (
        REPO / "labs" / "labkit" / "__init__.py").read_text()


def test_gpu_and_cluster_only_objects_are_refused(fake_labs: Path, tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with pytest.raises(dt.DockerError, match="needs a GPU"):
        dt.pod_runs(render(load("10")), run, "img")
    with pytest.raises(dt.DockerError, match=r"TF jobs only.*Deployment"):
        dt.pod_runs([{"kind": "Deployment", "metadata": {"name": "x"}}], run, "img")
    # Refused before a run directory exists.
    lab = load("10")
    with pytest.raises(dt.DockerError, match="needs a GPU"):
        dt.run(lab, plan_lab(lab, {}, {}, []), None, {}, quiet=True)  # type: ignore[arg-type]
    assert rundir.latest(lab.name) is None


def test_missing_image_is_one_line_with_the_build_command(require_docker: None) -> None:
    with pytest.raises(dt.DockerError, match=r"image local/none:0 not found: build it with "
                                             r"`labs/build-image.sh`"):
        dt.preflight("local/none:0")


# --- end to end ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab_image(require_docker: None) -> str:
    """The lab image from labs/Dockerfile; CI builds it (tests/support/build-images.sh)."""
    probe = subprocess.run(["docker", "image", "inspect", dt.default_image()], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        reason = f"image {dt.default_image()} missing: labs/build-image.sh --base local/debian:12"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(f"SKIPPED LOUDLY: {reason}")
    return dt.default_image()


def labctl(state: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LABCTL_STATE_DIR": str(state)}
    return subprocess.run([*LABCTL, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False, cwd=REPO)


def leftovers(run_id: str) -> list[str]:
    label = f"label={m.LABEL_RUN}={run_id}"
    containers = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True,
                                text=True, check=True).stdout.split()
    networks = subprocess.run(["docker", "network", "ls", "-q", "--filter", label],
                              capture_output=True, text=True, check=True).stdout.split()
    return containers + networks


def latest(state: Path, lab: str) -> dict:
    return json.loads((state / "runs" / lab / "latest" / "run.json").read_text())


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.labs
@pytest.mark.parametrize(("lab", "options"), [
    ("04-between-graph-async", ["--kill", "worker:1@300"]),  # and a container restart
    ("05-between-graph-sync", []),
])
def test_lab_runs_to_completion_in_containers_and_checks(lab: str, options: list[str],
                                                         lab_image: str, tmp_path: Path) -> None:
    started = time.monotonic()
    done = labctl(tmp_path, "run", lab, "--target", "docker", "--check", *options)
    wall = time.monotonic() - started
    print(f"docker target: {lab} {' '.join(options)} took {wall:.1f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PASS:" in done.stdout
    record = latest(tmp_path, lab)
    assert record["target"] == "docker" and record["status"] == "succeeded"
    assert record["cluster"]["worker"][0].endswith(".tf-lab.svc:2222")
    assert leftovers(record["run_id"]) == []
    if options:
        restarted = {r["task"] for r in record["restarts"]}
        assert restarted == {"worker:1"}, record["restarts"]
        assert record["kills"][0]["task"] == "worker:1"


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.labs
def test_ctrl_c_removes_containers_and_network(lab_image: str, tmp_path: Path) -> None:
    env = {**os.environ, "LABCTL_STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen([*LABCTL, "run", "04-between-graph-async", "--target", "docker",
                             "--steps", "100000"], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=sigint_as_from_a_terminal)
    run_id = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            run_file = tmp_path / "runs" / "04-between-graph-async" / "latest" / "run.json"
            if run_file.is_file():
                run_id = json.loads(run_file.read_text())["run_id"]
                if len(leftovers(run_id)) >= 4:  # 3 containers + the network
                    break
            time.sleep(0.5)
        assert run_id and len(leftovers(run_id)) >= 4, "the run never started its containers"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            # labctl never got to remove them: a 100000-step run would go on eating the CPU
            # of every test after this one.
            if run_id:
                dt.remove(run_id)
    assert proc.returncode == 130, out[-2000:]
    assert leftovers(run_id) == []
    assert latest(tmp_path, "04-between-graph-async")["status"] == "interrupted"
