"""Lab 08 check: asks the cluster whether each step of the lab left the state it should.

1. the Pod hello-pod runs and is Ready;
2. the Deployment hello was scaled to 3 replicas, all Ready;
3. a rolling update put VERSION=v2 into every replica (revision 2 or later);
4. a deleted hello pod was replaced (its ReplicaSet created more pods than it has replicas);
5. the dns-client pod resolved hello.NAMESPACE.svc to the Service's ClusterIP and heard from two
   different hello pods through it.
"""

from __future__ import annotations

import re
from typing import Any

from labkit import checks
from labkit.checks import Run, require

REPLICAS = 3


def env_of(template: dict[str, Any]) -> dict[str, str]:
    (container,) = template["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def current_replicaset(api: Any, ns: str, deploy: dict[str, Any]) -> dict[str, Any]:
    revision = deploy["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision")
    for rs in api.list("ReplicaSet", ns, "app=hello"):
        if rs["metadata"].get("annotations", {}).get(
                "deployment.kubernetes.io/revision") == revision:
            return rs
    raise checks.Failed("the Deployment's current ReplicaSet is missing",
                        f"`kubectl -n {ns} get rs -l app=hello`")


def check(run: Run) -> str:
    from labctl.k8s.api import Api, ClusterError

    ns = run.meta.get("namespace")
    require(run.meta.get("target") == "k8s" and ns, "this run did not use the cluster",
            "start the lab with `labctl run 08 --target k8s`")
    try:
        api = Api(run.meta.get("kubeconfig") or None)
        return _steps(api, ns)
    except ClusterError as err:
        raise checks.Failed(f"cannot ask the cluster: {err}", "is it up? (`vagrant status`)")\
            from None


def _steps(api: Any, ns: str) -> str:
    k = f"kubectl -n {ns}"
    pod = api.read("Pod", "hello-pod", ns)
    ready = pod and any(c["type"] == "Ready" and c["status"] == "True"
                        for c in pod.get("status", {}).get("conditions", []))
    require(ready, "step 1: the Pod hello-pod is not running and Ready",
            f"`{k} describe pod hello-pod`; recreate it with `labctl run 08 --target k8s`")

    deploy = api.read("Deployment", "hello", ns)
    require(deploy, "step 2: the Deployment hello is missing", "`labctl run 08 --target k8s`")
    spec, status = deploy["spec"], deploy.get("status", {})
    require(spec["replicas"] == REPLICAS and status.get("readyReplicas") == REPLICAS,
            f"step 3: hello has {status.get('readyReplicas', 0)}/{spec['replicas']} ready "
            f"replicas, not {REPLICAS}/{REPLICAS}",
            f"`{k} scale deployment hello --replicas {REPLICAS}`")

    revision = int(deploy["metadata"].get("annotations", {}).get(
        "deployment.kubernetes.io/revision", "1"))
    version = env_of(spec["template"]).get("VERSION")
    require(version == "v2" and revision >= 2,
            f"step 4: the Deployment runs VERSION={version} at revision {revision}",
            f"`{k} set env deployment/hello VERSION=v2`, then `{k} rollout status "
            "deployment/hello`")
    require(status.get("updatedReplicas") == REPLICAS and
            status.get("observedGeneration") == deploy["metadata"].get("generation"),
            "step 4: the rolling update has not finished",
            f"`{k} rollout status deployment/hello`")

    rs = current_replicaset(api, ns, deploy)
    events = api.list("Event", ns, field_selector=f"involvedObject.name={rs['metadata']['name']}")
    created = sum(e.get("count") or 1 for e in events if e.get("reason") == "SuccessfulCreate")
    require(created > REPLICAS,
            f"step 5: ReplicaSet {rs['metadata']['name']} created {created} pod(s) for "
            f"{REPLICAS} replicas: no pod was replaced",
            f"delete one (`{k} delete pod $({k} get pod -l app=hello -o name | head -1)`) and "
            f"watch a new one start (`{k} get pods -w`); events last an hour")

    svc = api.read("Service", "hello", ns)
    require(svc, "step 6: the Service hello is missing", "`labctl run 08 --target k8s`")
    job = api.read("Job", "dns-client", ns)
    done = job and any(c["type"] == "Complete" and c["status"] == "True"
                       for c in job.get("status", {}).get("conditions", []))
    require(done, "step 6: the dns-client Job did not complete",
            f"`{k} logs job/dns-client`")
    clients = [p for p in api.list("Pod", ns, "app=dns-client")
               if p.get("status", {}).get("phase") == "Succeeded"]
    require(clients, "step 6: the dns-client pod is gone", f"`{k} get pods -l app=dns-client`")
    log = api.log(clients[0]["metadata"]["name"], ns, "client")
    resolved = re.search(r"^resolved (\S+) to (\S+)$", log, re.MULTILINE)
    answers = set(re.findall(r"^answer pod=(\S+)", log, re.MULTILINE))
    require(resolved and resolved.group(2) == svc["spec"]["clusterIP"],
            f"step 6: the client resolved {resolved.group(0) if resolved else 'nothing'}, not "
            f"the Service's ClusterIP {svc['spec']['clusterIP']}", f"`{k} logs job/dns-client`")
    require(len(answers) >= 2, f"step 6: answers came from {len(answers)} pod(s), not 2",
            f"`{k} logs job/dns-client`")
    return (f"hello-pod Ready; hello scaled to {REPLICAS}, rolled out to v2 (revision "
            f"{revision}); a deleted pod was replaced ({created} created for {REPLICAS}); "
            f"{resolved.group(1)} -> {resolved.group(2)} answered from {len(answers)} pods")


if __name__ == "__main__":
    checks.main(check)
