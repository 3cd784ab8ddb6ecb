"""What counting FLOPs costs: the same runs with and without counting, interleaved, in one process.

The loop counts a step under ``FlopCounterMode`` the first time its batch shape and the schedule's phase occur
and reuses the count after, so the first epoch carries one counted step (and one counted evaluation) and the
later epochs only a dictionary lookup per step. Reported per workload: the median seconds of an epoch with and
without counting, for the first epoch and for the later ones, and their ratio: the median over repeats of each back-to-back pair's ratio.

    OMP_NUM_THREADS=2 python scripts/bench_counting.py --data-dir ../shared/data --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from lrpo_study.tasks import load_task
from lrpo_study.training.compute import FlopCounter, shape_key
from lrpo_study.training.hyperparameters import resolve, with_defaults
from lrpo_study.training.loop import train

WORKLOADS: dict[str, tuple[str, dict[str, Any], str, dict[str, Any]]] = {
    "fashion-mnist MLP, batch 128": ("fashion-mnist", {}, "fixed", {"lr": 0.05, "batch_size": 128, "epochs": 3}),
    "char GPT, batch 12": ("shakespeare-char", {"epoch_windows": 1200}, "cosine", {"epochs": 3, "warmup_steps": 10}),
}


def step_costs(task: Any, hp: dict[str, Any], repeats: int = 15) -> tuple[float, float, float]:
    """Seconds of one plain training step, of the same step counted under FlopCounterMode, and of what the loop
    does per step once the count is known (a shape key and a lookup): the quiet-machine view of the overhead."""
    from lrpo_study.training.optimizers import build_optimizer  # noqa: PLC0415

    torch.manual_seed(0)
    model = task.build_model()
    optimizer = build_optimizer(model.parameters(), hp, matrices_only=task.decay_matrices_only)
    x, y = task.train
    batch = (x[: hp["batch_size"]], y[: hp["batch_size"]])

    def step() -> None:
        loss = task.batch_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def timed(work: Any) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def counted() -> None:
        with FlopCounter().measure("step"):
            step()

    counter = FlopCounter()
    with counter.measure("known"):
        pass

    def lookup() -> None:
        for _ in range(1000):
            key = (shape_key(batch), None)
            with counter.measure("known"):
                pass
            counter["known"]
            del key

    return timed(step), timed(counted), timed(lookup) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--only", choices=list(WORKLOADS), help="one workload")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, (task_name, options, method, values) in WORKLOADS.items():
        if args.only and name != args.only:
            continue
        task = load_task(task_name, options, data_dir=args.data_dir)
        hp = resolve(method, with_defaults(method, values, task.defaults))
        seconds: dict[bool, list[list[float]]] = {True: [], False: []}
        flops = 0
        for i in range(args.repeats):
            for count in ((False, True) if i % 2 == 0 else (True, False)):  # interleaved, alternating which goes first
                result = train(task=task, method=method, hyperparameters=hp, seed=0, count_flops=count)
                seconds[count].append(result.curves["seconds"])
                flops = result.curves["flops"][0] if count else flops
        # Paired by repeat (the two runs of a repeat ran back to back), so a drift of the machine cancels out.
        first = [w[0] / o[0] for w, o in zip(seconds[True], seconds[False], strict=True)]
        later = [statistics.fmean(w[1:]) / statistics.fmean(o[1:]) for w, o in zip(seconds[True], seconds[False], strict=True)]
        plain = statistics.median(v for s in seconds[False] for v in s)
        one, counted, lookup = step_costs(task, hp)
        steps = task.steps_per_epoch(hp["batch_size"])
        print(f"{name}: {flops:.4g} FLOPs per epoch, {plain:.3f} s per epoch without counting")
        print(f"  one step {one * 1e3:.2f} ms, counted {counted * 1e3:.2f} ms (once per batch shape and phase: "
              f"{(counted - one) / plain:+.2%} of an epoch); per step once counted {lookup * 1e6:.1f} us "
              f"({lookup * steps / plain:+.3%} of an epoch of {steps} steps)")
        for label, ratios in (("first epoch ", first), ("later epochs", later)):
            print(f"  {label}: with / without counting, median of {len(ratios)} pairs {statistics.median(ratios):.4f} "
                  f"(range {min(ratios):.4f}-{max(ratios):.4f}): overhead {statistics.median(ratios) - 1:+.2%}")

if __name__ == "__main__":
    main()
