"""A lab's hand-written manifests ([k8s] extra), stamped into a run like the generated ones.

They are YAML with a few `${...}` fields filled per run — `${namespace}`, `${configmap}`,
`${volume}`, `${image}`, `${run}`, and `${tf_version}` (versions.yml's tensorflow_version) —
then get the run's namespace and labels (their pod templates too, so a run sees their pods), so
`labctl clean` finds them, and their Jobs the run's deadline. A CronJob counts as the Jobs it
makes: its job template gets the labels and the deadline, its pod template the rest.
An object labelled `labctl/shared: "true"` in its file outlives the run (lab 11's model server).
A configMap volume of the run's ConfigMap gets its items (keys cannot hold '/').
"""

from __future__ import annotations

import string
from typing import Any

from labctl import versions
from labctl.k8s import manifests as m
from labctl.k8s.manifests import Manifest, Names, Placement, Settings
from labctl.k8s.optional import need
from labctl.labs import Lab


def _job_spec(obj: Manifest) -> dict[str, Any]:
    """The spec that holds a workload's pod template: its own, or for a CronJob the spec of
    the Jobs it makes (the object's own dict, for stamping)."""
    spec: dict[str, Any] = obj.get("spec", {})
    if obj.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec


def _pod_specs(obj: Manifest) -> list[dict[str, Any]]:
    spec = obj.get("spec", {})
    if obj.get("kind") == "Pod":
        return [spec]
    template = _job_spec(obj).get("template", {}).get("spec")
    return [template] if template else []


def load(lab: Lab, conf: Settings, names: Names, where: Placement) -> list[Manifest]:
    yaml = need("yaml")

    fields = {"namespace": names.namespace, "configmap": names.configmap,
              "volume": names.volume, "image": m.image(lab, where), "run": where.run_id,
              "tf_version": versions.get("tensorflow_version")}
    out: list[Manifest] = []
    for rel in conf.extra:
        path = lab.path / rel
        try:
            text = string.Template(path.read_text()).substitute(fields)
            docs = [d for d in yaml.safe_load_all(text) if d]
        except (KeyError, ValueError, yaml.YAMLError) as exc:
            raise m.RenderError(f"{path}: {exc}") from None
        for obj in docs:
            if not isinstance(obj, dict) or "kind" not in obj or "metadata" not in obj:
                raise m.RenderError(f"{path}: every document must be a Kubernetes object")
            meta = obj["metadata"]
            own = meta.get("labels", {})
            shared = own.get(m.LABEL_SHARED) == "true"
            component = own.get("app.kubernetes.io/component", obj["kind"].lower())
            stamp = m.labels(lab, where, component, shared=shared)
            meta["labels"] = {**stamp, **own}
            meta["namespace"] = names.namespace
            ours = {k: v for k, v in stamp.items() if k.startswith("labctl/")}
            if obj["kind"] in ("Job", "CronJob"):  # bounded like the generated ones
                _job_spec(obj).setdefault("activeDeadlineSeconds",
                                          where.deadline_s or conf.deadline)
            if obj["kind"] == "CronJob":  # the Jobs it makes, found and cleaned like a run's
                jmeta = obj["spec"]["jobTemplate"].setdefault("metadata", {})
                jmeta["labels"] = {**ours, **jmeta.get("labels", {})}
            template = _job_spec(obj).get("template")
            if template is not None:  # their pods too, so a run finds and reports them
                tmeta = template.setdefault("metadata", {})
                tmeta["labels"] = {**ours, **tmeta.get("labels", {})}
            for spec in _pod_specs(obj):
                for volume in spec.get("volumes", []):
                    cm = volume.get("configMap")
                    if cm and cm.get("name") == names.configmap and "items" not in cm:
                        volume["configMap"] = m.program_volume(lab, names)["configMap"]
            out.append(obj)
    return out
