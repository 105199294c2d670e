"""`labctl render` output for every lab and option set: valid against the Kubernetes 1.37 schemas
(kubernetes-validate --strict) and consistent with itself: TF_CONFIG hosts are the render's own
Services on the port the pods listen on, mounts have volumes, selectors select the right pods,
and the Job settings that upstream rejects or that TF needs are as they must be."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from _manifests import by_kind, load, pod_specs, render

from labctl import versions
from labctl.k8s import manifests as m
from labctl.k8s import optional
from labctl.labs import labs_dir

REPO = Path(__file__).resolve().parents[2]
LABS = sorted(p.parent.name for p in (REPO / "labs").glob("[0-9][0-9]-*/lab.toml"))
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def option_sets(lab: Any) -> list[tuple[str, dict[str, Any]]]:
    """Defaults, each task count at its bounds, a step override, an attendee namespace."""
    sets: list[tuple[str, dict[str, Any]]] = [("defaults", {})]
    if lab.tasks:
        sets.append(("min", {"counts": {t: c.min for t, c in lab.tasks.items()}}))
        sets.append(("max", {"counts": {t: c.max for t, c in lab.tasks.items()}}))
    if "steps" in lab.args:
        sets.append(("steps", {"args": {"steps": 7}}))
    sets.append(("namespace", {"namespace": "alice", "create_namespace": False,
                               "run_id": "20261128-101500"}))
    return sets


def renders(name: str) -> list[tuple[str, list[m.Manifest]]]:
    lab = load(name)
    return [(label, render(lab, **opts)) for label, opts in option_sets(lab)]


@pytest.mark.parametrize("name", LABS)
def test_every_render_validates_strictly_against_kubernetes_1_37(name: str) -> None:
    for label, docs in renders(name):
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, versions.get("kube_version"), strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{name} [{label}] {doc['kind']}/{doc['metadata']['name']}: "
                            f"{err.message} at {'.'.join(map(str, err.path))}")


def tf_configs(docs: list[m.Manifest]) -> dict[str, dict[str, Any]]:
    out = {}
    for job_name, spec in pod_specs(docs):
        for container in spec["containers"]:
            for var in container.get("env", []):
                if var["name"] == "TF_CONFIG":
                    out[job_name] = json.loads(var["value"])
    return out


@pytest.mark.parametrize("name", LABS)
def test_tf_config_hosts_are_the_renders_own_services_on_the_pods_port(name: str) -> None:
    for label, docs in renders(name):
        services, jobs = by_kind(docs, "Service"), by_kind(docs, "Job")
        for job_name, config in tf_configs(docs).items():
            task = config["task"]
            job = jobs[job_name]
            assert job["metadata"]["labels"][m.LABEL_TASK] == f"{task['type']}-{task['index']}"
            for hosts in config["cluster"].values():
                for host in hosts:
                    name_, _, port = host.rpartition(":")
                    svc_name, ns, svc = name_.split(".")
                    assert svc == "svc", host
                    service = services[svc_name]  # KeyError: a host without a Service
                    assert service["metadata"]["namespace"] == ns, (label, host)
                    (svc_port,) = service["spec"]["ports"]
                    assert svc_port["port"] == int(port) == m.PORT
                    assert service["spec"]["clusterIP"] == "None"
                    # The Service selects exactly the pod of that task, which listens there.
                    selected = [j for j in jobs.values() if all(
                        j["spec"]["template"]["metadata"]["labels"].get(k) == v
                        for k, v in service["spec"]["selector"].items())]
                    assert [j["metadata"]["name"] for j in selected] == [svc_name], host
                    pod = selected[0]["spec"]["template"]["spec"]
                    ports = {p["name"]: p["containerPort"] for c in pod["containers"]
                             for p in c.get("ports", [])}
                    assert ports[svc_port["targetPort"]] == int(port)


@pytest.mark.parametrize("name", LABS)
def test_mounts_volumes_configmaps_and_claims_resolve(name: str) -> None:
    for label, docs in renders(name):
        configmaps, claims = by_kind(docs, "ConfigMap"), by_kind(docs, "PersistentVolumeClaim")
        for obj, spec in pod_specs(docs):
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for container in spec["containers"]:
                for mount in container.get("volumeMounts", []):
                    assert mount["name"] in volumes, (label, obj, mount)
            for volume in volumes.values():
                if "configMap" in volume:
                    cm = configmaps[volume["configMap"]["name"]]
                    keys = set(cm.get("data", {})) | set(cm.get("binaryData", {}))
                    items = volume["configMap"]["items"]
                    assert {i["key"] for i in items} <= keys, (label, obj)
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims, (label, obj)


@pytest.mark.parametrize("name", LABS)
def test_the_container_runs_the_shipped_program_with_the_contracts_options(name: str) -> None:
    lab = load(name)
    docs = render(lab)
    task_jobs = [j for j in by_kind(docs, "Job").values()
                 if m.LABEL_TASK in j["metadata"]["labels"]]
    expected = sum(c.default for c in lab.tasks.values()) or 1
    assert len(task_jobs) == (expected if m.settings(lab).jobs else 0)
    for job in task_jobs:
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        items = {i["path"] for v in pod["volumes"] if "configMap" in v
                 for i in v["configMap"]["items"]}
        program = container["command"][1].removeprefix(m.PROGRAM_MOUNT + "/")
        assert program in items
        assert (labs_dir() / program).resolve() == (lab.path / lab.program).resolve()
        assert container["args"][:2] == ["--output-dir", m.OUTPUT_MOUNT]
        assert "labkit/__init__.py" in items
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["PYTHONPATH"] == m.PROGRAM_MOUNT
        assert ("TF_CONFIG" in env) == bool(lab.tasks)


@pytest.mark.parametrize("name", LABS)
def test_configmap_holds_the_files_byte_for_byte(name: str) -> None:
    lab = load(name)
    (cm,) = [c for c in by_kind(render(lab), "ConfigMap").values()
             if c["metadata"]["labels"]["app.kubernetes.io/component"] == "programs"]
    files = m.program_files(lab)
    assert len(cm.get("data", {})) + len(cm.get("binaryData", {})) == len(files)
    for path, file in files.items():
        key = path.replace("/", "__")
        assert re.fullmatch(r"[-._a-zA-Z0-9]+", key)
        if key in cm.get("binaryData", {}):
            assert base64.b64decode(cm["binaryData"][key]) == file.read_bytes()
        else:
            assert cm["data"][key] == file.read_text()
    assert not any(p.endswith("check.py") and not p.startswith("labkit/") for p in files)


@pytest.mark.parametrize("name", LABS)
def test_names_labels_and_clean_up_labels(name: str) -> None:
    for label, docs in renders(name):
        for doc in docs:
            meta = doc["metadata"]
            assert DNS_LABEL.match(meta["name"]) and len(meta["name"]) <= 63, meta["name"]
            labels = meta["labels"]
            assert labels["app.kubernetes.io/managed-by"] == "labctl"
            assert labels[m.LABEL_LAB] == name
            # Every object carries its run id, or is explicitly shared between runs.
            assert (m.LABEL_RUN in labels) != (labels.get(m.LABEL_SHARED) == "true"), (label,
                                                                                        meta)
            for key, value in labels.items():
                assert len(value) <= 63 and LABEL_VALUE.match(value), (key, value)
            if doc["kind"] != "Namespace":
                assert meta["namespace"]
        for deploy in by_kind(docs, "Deployment").values():
            selector = deploy["spec"]["selector"]["matchLabels"]
            pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= pod_labels.items()


@pytest.mark.parametrize("name", LABS)
def test_jobs_retry_as_kubernetes_allows_and_never_retry_a_config_error(name: str) -> None:
    for label, docs in renders(name):
        for job in by_kind(docs, "Job").values():
            spec = job["spec"]
            # podFailurePolicy is rejected by the API server unless restartPolicy is Never
            # (schemas cannot see that): the Job controller does the OnFailure retries.
            assert spec["template"]["spec"]["restartPolicy"] == "Never"
            if "podFailurePolicy" not in spec:
                continue
            assert spec["backoffLimit"] == m.BACKOFF_LIMIT
            rules = spec["podFailurePolicy"]["rules"]
            assert {"action": "FailJob", "onExitCodes": {
                "containerName": m.CONTAINER, "operator": "In", "values": [2]}} in rules
            assert any(r["action"] == "Ignore" and r["onPodConditions"][0]["type"] ==
                       "DisruptionTarget" for r in rules), "an evicted pod must not count"
            names = {c["name"] for c in spec["template"]["spec"]["containers"]}
            assert m.CONTAINER in names, label


@pytest.mark.parametrize("name", LABS)
def test_every_job_ends_by_the_labs_deadline(name: str) -> None:
    """A run's Jobs stop holding CPU and memory when nobody is left to stop them."""
    lab = load(name)
    for label, docs in renders(name):
        for job in by_kind(docs, "Job").values():
            assert job["spec"]["activeDeadlineSeconds"] == m.settings(lab).deadline, label
    for job in by_kind(render(lab, deadline_s=60), "Job").values():
        assert job["spec"]["activeDeadlineSeconds"] == 60


def test_the_gpu_lab_allows_for_pulling_its_image() -> None:
    assert m.settings(load("10")).deadline > m.settings(load("09")).deadline == m.DEADLINE_S


@pytest.mark.parametrize("value", ["0", "-5", "'1h'", "1.5", "true"])
def test_a_bad_deadline_is_one_line(tmp_path: Path, value: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl import labs

    lab_dir = tmp_path / "12-x"
    lab_dir.mkdir()
    (lab_dir / "train.py").write_text("")
    (lab_dir / "lab.toml").write_text(f'title = "x"\nkind = "cluster"\nprogram = "train.py"\n'
                                      f"[k8s]\ndeadline = {value}\n")
    with pytest.raises(m.RenderError, match=r"\[k8s\]: `deadline` must be a whole number of "
                                            r"seconds > 0"):
        m.settings(labs.load_lab(lab_dir))


@pytest.mark.parametrize("name", LABS)
def test_pods_meet_pod_security_restricted_with_pinned_images(name: str) -> None:
    for label, docs in renders(name):
        for obj, spec in pod_specs(docs):
            assert spec["securityContext"]["runAsNonRoot"] is True, obj
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            assert spec.get("automountServiceAccountToken") is False, obj
            for c in spec["containers"]:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"]["drop"] == ["ALL"]
                assert sc.get("readOnlyRootFilesystem") is True
                image, _, tag = c["image"].rpartition(":")
                assert image and tag and tag != "latest", (label, obj, c["image"])
                assert c["resources"]["requests"] and c["resources"]["limits"]
        for ns in by_kind(docs, "Namespace").values():
            assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("name", LABS)
def test_gpu_only_where_the_lab_asks_for_it(name: str) -> None:
    lab = load(name)
    gpu = m.settings(lab).gpu
    for job in by_kind(render(lab), "Job").values():
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        limits = container["resources"]["limits"]
        assert (limits.get(m.GPU_RESOURCE) == "1") == gpu
        assert (pod.get("runtimeClassName") == m.RUNTIME_CLASS) == gpu
        assert container["image"] == m.tf_image(gpu)


@pytest.mark.parametrize("name", LABS)
def test_pvc_is_rwx_on_the_nfs_storage_class(name: str) -> None:
    for _, docs in renders(name):
        for claim in by_kind(docs, "PersistentVolumeClaim").values():
            assert claim["spec"]["storageClassName"] == m.STORAGE_CLASS
            assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_attendee_namespace_is_used_not_created() -> None:
    docs = render(load("09"), namespace="alice", create_namespace=False)
    assert not by_kind(docs, "Namespace")
    assert {d["metadata"]["namespace"] for d in docs} == {"alice"}
    hosts = [h for c in tf_configs(docs).values() for hs in c["cluster"].values() for h in hs]
    assert hosts and all(".alice.svc:2222" in h for h in hosts)


def test_a_missing_k8s_extra_is_one_line_with_the_install_command() -> None:
    from labctl.errors import UsageError

    with pytest.raises(UsageError, match=r"needs no_such_module: install it with "
                                         r"`\.venv/bin/pip install -e '\.\[k8s\]'`"):
        optional.need("no_such_module.sub")


def test_lab09_runs_lab04s_program_with_lab04s_tasks_and_arguments() -> None:
    lab09, lab04 = load("09"), load("04")
    assert (lab09.path / lab09.program).resolve() == (lab04.path / lab04.program).resolve()
    assert (lab09.tasks, lab09.args, lab09.success, lab09.shutdown) == (
        lab04.tasks, lab04.args, lab04.success, lab04.shutdown)


CRONJOB = """
apiVersion: batch/v1
kind: CronJob
metadata: {name: loop, labels: {labctl/shared: "true"}}
spec:
  schedule: "0 2 * * *"
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: loop}}
        spec:
          restartPolicy: Never
          containers: [{name: tensorflow, image: "${image}"}]
          volumes: [{name: programs, configMap: {name: "${configmap}"}}]
"""


def test_a_cronjob_is_stamped_like_the_jobs_it_makes(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Its Jobs carry the lab's labels (so `labctl clean` and a run find them) and the run's
    deadline; their pods the labels and the items of the programs' ConfigMap."""
    from labctl import labs

    monkeypatch.setenv("LABCTL_LABS_DIR", str(tmp_path))
    lab_dir = tmp_path / "16-loop"
    (lab_dir / "manifests").mkdir(parents=True)
    (lab_dir / "cycle.py").write_text("")
    (lab_dir / "manifests" / "cron.yaml").write_text(CRONJOB)
    (lab_dir / "lab.toml").write_text('title = "x"\nkind = "cluster"\nprogram = "cycle.py"\n'
                                      '[k8s]\nextra = ["manifests/cron.yaml"]\n')
    lab = labs.load_lab(lab_dir)
    (cron,) = by_kind(render(lab, run_id="r1", deadline_s=60), "CronJob").values()
    jobs = cron["spec"]["jobTemplate"]
    pods = jobs["spec"]["template"]
    for meta in (cron["metadata"], jobs["metadata"], pods["metadata"]):
        assert meta["labels"][m.LABEL_LAB] == "16-loop"
        assert meta["labels"][m.LABEL_SHARED] == "true"
    assert pods["metadata"]["labels"]["app"] == "loop"
    assert jobs["spec"]["activeDeadlineSeconds"] == 60
    (programs,) = pods["spec"]["volumes"]
    assert [i["path"] for i in programs["configMap"]["items"]] == ["16-loop/cycle.py"]
    assert "activeDeadlineSeconds" not in cron["spec"]  # not a CronJob field
