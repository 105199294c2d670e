"""Check lab 07: accuracy, and every worker ended with the same weights.

The checksums were gathered from all workers by a collective at the end of training (in
results.json); each worker also wrote its own checksum and test accuracy in tasks/.
"""

from labkit.checks import Run, check_accuracy, main, require


def check(run: Run) -> str:
    results = run.results()
    accuracy = check_accuracy(run, results)
    workers = run.task_count("worker") or results.get("workers", 0)
    gathered = results.get("weight_checksums", [])
    require(len(gathered) == workers, f"{len(gathered)} weight checksums for {workers} workers",
            "gather one checksum per worker with strategy.gather at the end")
    own = [t.get("weight_checksum") for t in run.tasks("worker").values()]
    accuracies = {t.get("test_accuracy") for t in run.tasks("worker").values()}
    values = set(gathered) | set(own)
    require(len(values) == 1, f"the workers' weights differ: checksums {sorted(values)}",
            "create the model and optimizer inside strategy.scope() and train with "
            "strategy.run: the all-reduce keeps the copies identical")
    require(len(accuracies) == 1, f"the workers measured different accuracies: {accuracies}",
            "every worker should evaluate the same weights on the same test set")
    return (f"{accuracy}; all {workers} workers ended with identical weights "
            f"(checksum {gathered[0]:.4f}) and the same test accuracy")


if __name__ == "__main__":
    main(check)
