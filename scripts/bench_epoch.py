"""Epoch time: the reference code's DataLoader loop vs our tensor loop, and the FLOP-bound limit.

    python scripts/bench_epoch.py [--data-dir D] [--device cpu|cuda|auto] [--epochs 3] [--task fashion-mnist]
    python scripts/bench_epoch.py --task shakespeare-char


All three numbers come from this run on this machine: the reference style
(torchvision ToTensor + Normalize per sample, DataLoader, batch 1024, the
paper MLP with torch's Dropout), our loop (``lrpo_study.train``, fixed lr,
same model, data and batch size), and the FLOP bound
6 · parameters · samples / (matmul FLOP/s measured now, the best of the
model's own layer shape and a large square matmul). Last line:
``speedup=<reference/ours> flop_fraction=<bound/ours>``.

``--task shakespeare-char``: our loop on the default GPT with nanoGPT's batch of
12 windows of 64 (AdamW, clipping), in tokens per second, against the FLOP
bound (6 · parameters + 12 · layers · context · width) · tokens (nanoGPT's
estimate, attention included) over the best matmul FLOP/s of the model's
shapes and a large square one. Last line: ``tokens_per_s=... flop_fraction=...``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _reference import BATCH, SAMPLES, reference_loader, reference_mlp, reference_train, sync

from lrpo_study.hyperparameters import resolve
from lrpo_study.tasks import load_task
from lrpo_study.tasks.fashion_mnist import count_parameters
from lrpo_study.train import resolve_device, train


def matmul_flops(device: torch.device, shapes: tuple[tuple[int, int, int], ...] = ((BATCH, 784, 256),)) -> float:
    best = 0.0
    for m, k, n in (*shapes, (2048, 2048, 2048)):
        a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
        for _ in range(3):
            a @ b
        sync(device)
        reps = max(3, int(2e10 // (2 * m * k * n)))
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--task", choices=("fashion-mnist", "shakespeare-char"), default="fashion-mnist")
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(f"device: {name}, torch {torch.__version__}")
    if args.task == "shakespeare-char":
        bench_shakespeare(args, device)
        return

    ref = reference_train(reference_loader(args.data_dir), device, args.epochs)
    task = load_task("fashion-mnist", {"split": "paper", "train_size": SAMPLES}, data_dir=args.data_dir, seed=42)
    hp = resolve("fixed", {"epochs": args.epochs + 1})
    ours = train(task=task, method="fixed", hyperparameters=hp, seed=42, device=device).curves["seconds"][1:]
    flops = matmul_flops(device)
    params = count_parameters(reference_mlp())
    bound = 6 * params * SAMPLES / flops
    ref_s, ours_s = statistics.median(ref), statistics.median(ours)
    print(f"reference DataLoader epoch: {ref_s:.3f} s  (epochs: {', '.join(f'{t:.3f}' for t in ref)})")
    print(f"our tensor-loop epoch:      {ours_s:.3f} s  (epochs: {', '.join(f'{t:.3f}' for t in ours)})")
    print(f"matmul: {flops / 1e9:.1f} GFLOP/s; FLOP bound 6*{params}*{SAMPLES}/that = {bound:.3f} s/epoch")
    print(f"speedup={ref_s / ours_s:.2f} flop_fraction={bound / ours_s:.2f}")


def bench_shakespeare(args: argparse.Namespace, device: torch.device) -> None:
    task = load_task("shakespeare-char", {}, data_dir=args.data_dir, seed=42)
    o = task.options
    hp = resolve("fixed", {"epochs": args.epochs + 1, "optimizer": "adamw", "lr": 1e-3, "beta2": 0.99,
                           "weight_decay": 0.1, "grad_clip": 1.0, "batch_size": 12})
    result = train(task=task, method="fixed", hyperparameters=hp, seed=42, device=device)
    seconds = statistics.median(result.curves["seconds"][1:])  # the first epoch warms up
    tokens = task.samples_per_epoch * o["block_size"]
    width, rows = o["n_embd"], 12 * o["block_size"]
    flops = matmul_flops(device, ((rows, width, 3 * width), (rows, width, 4 * width), (rows, 4 * width, width), (rows, width, 65)))
    per_token = 6 * result.model_parameters + 12 * o["n_layer"] * o["block_size"] * width
    bound = per_token * tokens / flops
    print(f"our loop: {tokens / seconds:,.0f} tokens/s ({seconds:.3f} s per epoch of {tokens:,} tokens, "
          f"{result.model_parameters:,} parameters)")
    print(f"matmul: {flops / 1e9:.1f} GFLOP/s; FLOP bound {per_token:,} FLOP/token x {tokens:,} tokens / that = {bound:.3f} s/epoch")
    print(f"tokens_per_s={tokens / seconds:.0f} flop_fraction={bound / seconds:.2f}")


if __name__ == "__main__":
    main()
