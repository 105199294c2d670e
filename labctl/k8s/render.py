"""Everything one lab run creates on a cluster, in creation order: the generated manifests
(manifests.py) and the lab's own ([k8s] extra, extra.py)."""

from __future__ import annotations

from labctl.k8s import extra
from labctl.k8s import manifests as m
from labctl.labs import Lab
from labctl.plan import LabPlan
from labctl.tasks import SINGLE


def render(lab: Lab, plan: LabPlan, where: m.Placement) -> list[m.Manifest]:
    """Everything one run creates, in creation order."""
    names = m.Names(lab, plan, where)
    conf = m.settings(lab)
    out: list[m.Manifest] = []
    if where.create_namespace:
        out.append(m.namespace(lab, where))
    out.append(m.configmap(lab, names, where))
    if conf.jobs:
        out.append(m.pvc(lab, names, where))
        cluster = m.cluster_of(names, plan.tasks)
        out += [m.service(lab, names, where, t) for t in plan.tasks if t.type != SINGLE]
        out += [m.job(lab, plan, names, where, t, cluster) for t in plan.tasks]
    out += extra.load(lab, conf, names, where)
    return out
