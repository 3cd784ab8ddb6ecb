"""The LRPO paper's Table 1, reproduced: reference configuration, seeds 42, 43, 44.

    python scripts/reproduce_paper.py [--data-dir D] [--device auto] [--seeds 42,43,44] [--out results]

Paper split (20,000 official-train images; 4,000 "validation" images from the
official test set), the 245,290-parameter MLP, SGD lr 0.05 momentum 0.9
weight decay 1e-4, batch 1024. Arms: the fixed-lr baseline for 100 epochs,
LRPO-faithful (10 + 1 + 5 epochs, the reference code's α rule) and
LRPO-predicted (same phases, α from the probe-trained predictor). Prints the
table as mean ± sd over seeds beside the paper's numbers and writes
``results/paper_table1.json`` and ``results/paper_table1.md``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from _reproduction import parse

from lrpo_study.tasks import load_task
from lrpo_study.training.hyperparameters import resolve
from lrpo_study.training.loop import train

ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "fixed-LR baseline": ("fixed", {"lr": 0.05, "epochs": 100}),
    "LRPO faithful": ("lrpo", {"lr": 0.05, "pretrain_epochs": 10, "finetune_epochs": 5, "finetune_lr": 1e-3, "variant": "faithful"}),
    "LRPO predicted": ("lrpo", {"lr": 0.05, "pretrain_epochs": 10, "finetune_epochs": 5, "finetune_lr": 1e-3, "variant": "predicted"}),
}
PAPER = {
    "fixed-LR baseline": {"training time (s)": 477.15, "epochs": 100, "best val accuracy": 0.8845, "final val loss": 0.5215, "avg epoch time (s)": 4.77, "predictor overhead (s)": 0.0},
    "LRPO faithful": {"training time (s)": 76.30, "epochs": 16, "best val accuracy": 0.8645, "final val loss": 0.3791, "avg epoch time (s)": 4.76, "predictor overhead (s)": 0.12},
}
ROWS = ("training time (s)", "training FLOPs", "FLOPs of the method's extra work", "epochs", "best val accuracy", "final val loss", "avg epoch time (s)", "predictor overhead (s)", "alpha")


def measure(method: str, values: dict[str, Any], seed: int, device: torch.device, data_dir: str | None) -> dict[str, float | None]:
    task = load_task("fashion-mnist", {"split": "paper"}, data_dir=data_dir, seed=seed)
    result = train(task=task, method=method, hyperparameters=resolve(method, values), seed=seed, device=device, progress=True)
    return {
        "training time (s)": result.train_seconds, "training FLOPs": result.value("train_flops"),
        # what the epochs' own steps do not explain: LRPO's probes and predictor fit
        "FLOPs of the method's extra work": result.value("train_flops") - result.epochs * min(result.curves["flops"]),
        "epochs": result.epochs,
        "best val accuracy": result.value("best_val_accuracy"), "final val loss": result.value("final_val_loss"),
        "avg epoch time (s)": result.train_seconds / result.epochs,
        "predictor overhead (s)": float(result.extras.get("predictor_seconds", 0.0)),
        "alpha": float(result.extras["alpha"]) if "alpha" in result.extras else None,  # null in the JSON: no jump
    }


def mean_sd(values: list[float | None]) -> str:
    if any(v is None for v in values):
        return "—"
    present = [v for v in values if v is not None]
    sd = statistics.stdev(present) if len(present) > 1 else 0.0
    return f"{statistics.fmean(present):.4g} ± {sd:.2g}"


def main() -> None:
    args = parse(__doc__)
    device, seeds = args.device, args.seeds
    machine = args.machine
    start = time.perf_counter()
    runs = {arm: [measure(m, v, seed, device, args.data_dir) for seed in seeds] for arm, (m, v) in ARMS.items()}
    header = ["metric", *(f"{arm} (ours)" for arm in ARMS), *(f"{arm} (paper)" for arm in PAPER)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in ROWS:
        ours = [mean_sd([r[row] for r in runs[arm]]) for arm in ARMS]
        paper = [f"{PAPER[arm][row]:.4g}" if row in PAPER[arm] else "—" for arm in PAPER]
        lines.append("| " + " | ".join([row, *ours, *paper]) + " |")
    table = "\n".join(lines)
    print(f"\nTable 1 reproduced on {machine}, torch {torch.__version__}, seeds {seeds} (mean ± sd)\n")
    print(table)
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    (out / f"paper_table1{suffix}.json").write_text(json.dumps(
        {"machine": machine, "torch": torch.__version__, "seeds": seeds, "runs": runs, "paper": PAPER}, indent=2, allow_nan=False) + "\n")
    (out / f"paper_table1{suffix}.md").write_text(
        f"Machine: {machine}; torch {torch.__version__}; seeds {seeds}; mean ± sd.\n"
        f"Command: `python scripts/reproduce_paper.py`\n\n{table}\n")


if __name__ == "__main__":
    main()
