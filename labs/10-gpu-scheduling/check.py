"""Lab 10 check: the pod got a GPU from the scheduler and TensorFlow inside it trained on it.

On a cluster without GPU capacity the run ends "skipped" (nothing was scheduled): the check says
so and exits 0, as the lab itself does; GPU nodes are opt-in (inventory group gpu_nodes).
"""

from __future__ import annotations

from labkit import checks
from labkit.checks import Run, require


def check(run: Run) -> str:
    meta = run.meta
    if meta.get("status") == "skipped":
        return f"skipped: {meta.get('reason')} (nothing to verify without a GPU node)"
    require(meta.get("target") == "k8s", f"this run used the {meta.get('target')} target",
            "run it on the cluster: `labctl run 10 --target k8s`")
    require(meta.get("status") == "succeeded",
            f"the run ended {meta.get('status')}: {meta.get('reason')}",
            "`kubectl -n NAMESPACE describe pod -l labctl/lab=10-gpu-scheduling`: Insufficient "
            "nvidia.com/gpu means no free GPU; 'could not load NVML' means the runtime is not "
            "wired (roles/nvidia_gpu)")
    results = run.results()
    gpus = results.get("gpus") or []
    require(gpus, "TensorFlow saw no GPU inside the pod",
            "the pod got nvidia.com/gpu but no device: check RuntimeClass nvidia and "
            "`nvidia-ctk runtime configure --runtime=containerd` on the node "
            + ("" if results.get("cuda_build") else "(and use the -gpu image)"))
    device = str(results.get("device", ""))
    require("GPU" in device, f"training ran on {device}, not on a GPU",
            "TensorFlow fell back to the CPU: read the pod's log for CUDA errors")
    return f"TensorFlow saw {', '.join(gpus)} and trained on {device}; " + checks.check_accuracy(
        run, results)


if __name__ == "__main__":
    checks.main(check)
