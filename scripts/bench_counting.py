"""What counting FLOPs costs: the same runs with and without counting, interleaved, in one process.

The loop counts a step under ``FlopCounterMode`` the first time its batch shape and the schedule's phase occur
and reuses the count after, so the first epoch carries one counted step (and one counted evaluation) and the
later epochs only a dictionary lookup per step. Reported per workload: the median seconds of an epoch with and
without counting, for the first epoch and for the later ones, and their ratio.

    OMP_NUM_THREADS=2 python scripts/bench_counting.py --data-dir ../shared/data --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch

from lrpo_study.tasks import load_task
from lrpo_study.training.hyperparameters import resolve, with_defaults
from lrpo_study.training.loop import train

WORKLOADS: dict[str, tuple[str, dict[str, Any], str, dict[str, Any]]] = {
    "fashion-mnist MLP, batch 128": ("fashion-mnist", {}, "fixed", {"lr": 0.05, "batch_size": 128, "epochs": 3}),
    "char GPT, batch 12": ("shakespeare-char", {"epoch_windows": 1200}, "cosine", {"epochs": 3, "warmup_steps": 10}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, (task_name, options, method, values) in WORKLOADS.items():
        task = load_task(task_name, options, data_dir=args.data_dir)
        hp = resolve(method, with_defaults(method, values, task.defaults))
        seconds: dict[bool, list[list[float]]] = {True: [], False: []}
        for _ in range(args.repeats):
            for count in (False, True):  # interleaved: a drift in the machine's speed hits both alike
                result = train(task=task, method=method, hyperparameters=hp, seed=0, count_flops=count)
                seconds[count].append(result.curves["seconds"])
        first = {c: statistics.median(s[0] for s in runs) for c, runs in seconds.items()}
        later = {c: statistics.median(v for s in runs for v in s[1:]) for c, runs in seconds.items()}
        flops = result.curves["flops"][0]
        print(f"{name}: {flops:.4g} FLOPs per epoch")
        print(f"  first epoch  without {first[False]:7.3f} s  with {first[True]:7.3f} s  overhead {first[True] / first[False] - 1:+.2%}")
        print(f"  later epochs without {later[False]:7.3f} s  with {later[True]:7.3f} s  overhead {later[True] / later[False] - 1:+.2%}")


if __name__ == "__main__":
    main()
