"""Check lab 06: accuracy, every scheduled step ran, and the variables live on the ps tasks."""

from labkit.checks import Run, check_accuracy, main, require, task_of


def check(run: Run) -> str:
    results = run.results()
    accuracy = check_accuracy(run, results)
    steps = run.arg("steps") or results.get("global_step")
    require(results.get("global_step") == steps,
            f"{results.get('global_step')} of {steps} scheduled steps ran",
            "call coordinator.join() before reading results")
    placement = results.get("variables", {})
    elsewhere = [name for name, device in placement.items()
                 if not task_of(device).startswith("ps:")]
    require(placement and not elsewhere,
            f"variables not on a ps task: {', '.join(elsewhere) or 'none recorded'}",
            "create the model and optimizer inside `with strategy.scope():`")
    holders = sorted({task_of(device) for device in placement.values()})
    return (f"{accuracy}; {steps} steps scheduled by the coordinator and run by the workers; "
            f"the {len(placement)} model variables live on {', '.join(holders)}")


if __name__ == "__main__":
    main(check)
