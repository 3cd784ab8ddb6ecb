"""nanoGPT's ``shakespeare_char`` CPU run, through our loop: seeds 42, 43, 44.

    python scripts/reproduce_nanogpt.py [--data-dir D] [--device auto] [--seeds 42,43,44] [--out results]

nanoGPT's README (CPU): 4 layers, 4 heads, 128-dimensional embeddings,
context 64, batch 12, dropout 0, no biases, AdamW lr 1e-3 (β1 0.9, β2 0.99,
weight decay 0.1 on weight matrices only), gradient clipping at norm 1.0,
100 warm-up iterations then cosine to 1e-4 over 2,000 iterations → validation
loss about 1.88. Here: task ``shakespeare-char`` with nanoGPT's split unchanged
(``split = "nanogpt"``: the last 10 % validates), 10 epochs of 2,400 windows
(200 iterations of batch 12 each, so 2,000 iterations, 1.536 M tokens), and
the final validation loss on 2,400 windows evenly spaced over the validation
text (nanoGPT estimates it on 200 × 12 random windows). Writes
``results/nanogpt_shakespeare.json`` and ``.md``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from _reproduction import parse

from lrpo_study.study.objective import REFERENCES
from lrpo_study.tasks import load_task
from lrpo_study.training.hyperparameters import resolve
from lrpo_study.training.loop import train

NANOGPT_VAL_LOSS = 1.88
# nanoGPT's split and a long validation; the model and the recipe are the nanogpt reference of the study files.
TASK = {**REFERENCES["nanogpt"].task_options, "split": "nanogpt", "val_windows": 2400}
RECIPE = REFERENCES["nanogpt"].values


def main() -> None:
    args = parse(__doc__)
    device, seeds = args.device, args.seeds
    hp = resolve("cosine", RECIPE)
    runs = []
    for seed in seeds:
        task = load_task("shakespeare-char", TASK, data_dir=args.data_dir, seed=seed)
        result = train(task=task, method="cosine", hyperparameters=hp, seed=seed, device=device, progress=True)
        tokens = result.epochs * task.samples_per_epoch * task.options["block_size"]
        runs.append({
            "seed": seed, "final_val_loss": result.value("final_val_loss"), "val_loss_curve": result.curves["val_loss"],
            "train_seconds": result.train_seconds, "tokens": tokens, "tokens_per_second": tokens / result.train_seconds,
            "iterations": result.epochs * task.samples_per_epoch // hp["batch_size"],
        })
        print(f"seed {seed}: final val loss {result.value('final_val_loss'):.4f}, {tokens / result.train_seconds:,.0f} tokens/s")
    losses = [r["final_val_loss"] for r in runs]
    speeds = [r["tokens_per_second"] for r in runs]
    machine = args.machine
    summary = {
        "machine": machine, "torch": torch.__version__, "task": TASK, "hyperparameters": hp,
        "val_loss_mean": statistics.fmean(losses), "val_loss_sd": statistics.stdev(losses) if len(losses) > 1 else 0.0,
        "tokens_per_second_mean": statistics.fmean(speeds), "nanogpt_val_loss": NANOGPT_VAL_LOSS, "runs": runs,
    }
    table = "\n".join([
        "| | ours (mean ± sd over seeds " + ", ".join(map(str, seeds)) + ") | nanoGPT README |", "|---|---|---|",
        f"| final validation loss | {summary['val_loss_mean']:.4f} ± {summary['val_loss_sd']:.4f} | {NANOGPT_VAL_LOSS} |",
        f"| iterations × batch × context | {runs[0]['iterations']} × 12 × 64 = {runs[0]['tokens']:,} tokens | 2000 × 12 × 64 |",
        f"| training tokens / s | {summary['tokens_per_second_mean']:,.0f} ({machine}) | about 3,900 on 2 cores (issue 16's measurement) |",
    ])
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "nanogpt_shakespeare.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "nanogpt_shakespeare.md").write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"{time.perf_counter() - start:.0f} s")
