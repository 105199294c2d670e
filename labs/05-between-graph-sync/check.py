"""Check lab 05: accuracy, replicas_to_aggregate = workers, and that training really was
synchronous: every worker contributed, and some worker took a local step for (nearly) every
global step; asynchronously, N workers share the global steps and each takes about 1/N.
"""

from labkit.checks import Run, check_accuracy, main, require


def check(run: Run) -> str:
    results = run.results()
    accuracy = check_accuracy(run, results)
    workers = run.task_count("worker") or results.get("workers", 0)
    replicas = results.get("replicas_to_aggregate")
    require(replicas == workers, f"replicas_to_aggregate is {replicas}, the run has {workers} "
            "workers", "pass replicas_to_aggregate=len(workers) to SyncReplicasOptimizer")
    local = {stem: t["local_steps"] for stem, t in run.tasks("worker").items()}
    idle = [f"worker-{i}" for i in range(workers) if not local.get(f"worker-{i}")]
    require(not idle, f"no local steps from {', '.join(idle)}",
            f"each worker must finish and write tasks/worker-N.json: `labctl logs {run.lab}`")
    global_step = results.get("global_step", 0)
    require(workers == 1 or max(local.values()) >= 0.9 * global_step,
            f"the most active worker took {max(local.values())} local steps for {global_step} "
            "global steps: that is asynchronous training",
            "minimize with the SyncReplicasOptimizer and pass its make_session_run_hook()")
    steps = ", ".join(f"{stem} {n}" for stem, n in sorted(local.items()))
    return (f"{accuracy}; replicas_to_aggregate = {workers} workers; {global_step} global "
            f"steps, local steps: {steps}")


if __name__ == "__main__":
    main(check)
