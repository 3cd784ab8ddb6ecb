"""Each method's training FLOPs per epoch against a fixed lr, on the studies' workloads (results/README §7).

FLOPs are counted (``FlopCounterMode`` on the real model and batches), so one short run per method gives its
cost per epoch exactly; a study's trial costs that times its epochs, plus LRPO's probes at its jump.

    python scripts/flops_per_epoch.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
from typing import Any

from lrpo_study.tasks import load_task
from lrpo_study.training.hyperparameters import resolve, with_defaults
from lrpo_study.training.loop import train

# (task, options, [(label, method, values)]); the curvature values are the studies' defaults
WORKLOADS: list[tuple[str, dict[str, Any], list[tuple[str, str, dict[str, Any]]]]] = [
    ("fashion-mnist", {"train_size": 20000, "val_size": 4000}, [
        ("fixed", "fixed", {"batch_size": 1024}),
        ("greedylr", "greedylr", {"batch_size": 1024}),
        ("cosine", "cosine", {"batch_size": 1024}),
        ("curvature", "curvature", {"batch_size": 1024}),
        ("lrpo faithful (1 + 1 epochs)", "lrpo", {"batch_size": 1024, "pretrain_epochs": 1, "finetune_epochs": 0}),
        ("lrpo predicted (1 + 1 epochs)", "lrpo", {"batch_size": 1024, "pretrain_epochs": 1, "finetune_epochs": 0,
                                                   "variant": "predicted"}),
    ]),
    ("shakespeare-char", {"attention": "math"}, [
        ("fixed", "fixed", {}),
        ("greedylr", "greedylr", {}),
        ("curvature", "curvature", {}),
    ]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    for task_name, options, arms in WORKLOADS:
        task = load_task(task_name, options, data_dir=args.data_dir)
        print(f"\n{task_name} {options}: {task.samples_per_epoch} samples per epoch")
        print("| method | batch | FLOPs, epoch 1 | FLOPs, last epoch | × fixed (epoch 1) | evaluation FLOPs | seconds, epoch 1 |")
        print("|---|---|---|---|---|---|---|")
        reference = None
        for label, method, values in arms:
            epochs = 2 if method == "lrpo" else 1
            hp = resolve(method, with_defaults(method, {"epochs": epochs, **values}, task.defaults))
            curves = train(task=task, method=method, hyperparameters=hp, seed=42).curves
            reference = reference or curves["flops"][0]
            print(f"| {label} | {hp['batch_size']} | {curves['flops'][0]:.4g} | {curves['flops'][-1]:.4g} | "
                  f"{curves['flops'][0] / reference:.3f} | {curves['eval_flops'][0]:.4g} | {curves['seconds'][0]:.2f} |")


if __name__ == "__main__":
    main()
