"""Lab 10 check: the pod got a GPU from the scheduler and TensorFlow inside it trained on it.

On a cluster without GPU capacity the run ends "skipped" (nothing was scheduled): the check says
SKIP and exits 3, as labctl does; GPU nodes are opt-in (inventory group gpu_nodes). SKIP is not
a pass: nothing here was verified.
"""

from __future__ import annotations

from labkit import checks
from labkit.checks import Run, require

FAILED = ("`kubectl -n NAMESPACE describe pod -l labctl/lab=10-gpu-scheduling`: Insufficient "
          "nvidia.com/gpu means no free GPU; 'could not load NVML' means the runtime is not "
          "wired (roles/nvidia_gpu)")


def check(run: Run) -> str:
    meta = run.meta
    require(meta.get("target") == "k8s", f"this run used the {meta.get('target')} target",
            "run it on the cluster: `labctl run 10 --target k8s`")
    results = run.results()
    gpus = results.get("gpus") or []
    require(gpus, "TensorFlow saw no GPU inside the pod",
            "the pod got nvidia.com/gpu but no device: check RuntimeClass nvidia and "
            "`nvidia-ctk runtime configure --runtime=containerd` on the node "
            + ("" if results.get("cuda_build") else "(and use the -gpu image)"))
    device = str(results.get("device", ""))
    require("GPU" in device, f"training ran on {device}, not on a GPU",
            "TensorFlow fell back to the CPU: read the pod's log for CUDA errors")
    steps = checks.check_steps(run, run.checkpoint("checkpoints/weights"), "optimizer/_iterations")
    accuracy = checks.check_accuracy(run, run.checkpoint("checkpoints/weights"))
    return f"TensorFlow saw {', '.join(gpus)} and trained on {device} for {steps} steps; {accuracy}"


if __name__ == "__main__":
    checks.main(check, FAILED)
