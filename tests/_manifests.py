"""Rendering a lab's manifests, for the k8s and docker target tests."""

from __future__ import annotations

from typing import Any

from labctl import labs
from labctl.k8s import manifests as m
from labctl.k8s import render as rendering
from labctl.plan import plan_lab


def load(ident: str) -> labs.Lab:
    return labs.load_lab(labs.resolve(ident))


def render(lab: labs.Lab, counts: dict[str, int | None] | None = None,
           args: dict[str, Any] | None = None, **where: Any) -> list[m.Manifest]:
    return rendering.render(lab, plan_lab(lab, counts or {}, args or {}, []), m.Placement(**where))


def by_kind(docs: list[m.Manifest], kind: str) -> dict[str, m.Manifest]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[m.Manifest]) -> list[tuple[str, dict[str, Any]]]:
    """(object name, pod spec) of every Pod, Job, Deployment and CronJob."""
    out = []
    for doc in docs:
        if doc["kind"] == "Pod":
            out.append((doc["metadata"]["name"], doc["spec"]))
        elif doc["kind"] in ("Job", "Deployment"):
            out.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "CronJob":
            out.append((doc["metadata"]["name"],
                        doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return out
