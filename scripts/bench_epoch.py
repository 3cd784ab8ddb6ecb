"""Epoch time: the reference code's DataLoader loop vs our tensor loop, and the FLOP-bound limit.

    python scripts/bench_epoch.py [--data-dir D] [--device cpu|cuda|auto] [--epochs 5] [--task fashion-mnist]
    python scripts/bench_epoch.py --task shakespeare-char


All numbers come from this run on this machine: the reference style
(torchvision ToTensor + Normalize per sample, DataLoader, batch 1024, the
paper MLP with torch's Dropout), our loop (``lrpo_study.training.loop``, fixed lr,
same model, data and batch size), and the FLOP bound
6 · parameters · samples / (matmul FLOP/s, the best of the model's own layer
shapes and a large square matmul). A shared 2-core machine's speed drifts by
±20 % over minutes, so the matmul rate is measured again after every epoch and
each epoch is set against the mean of the rates measured just before and just
after it; the fraction printed is the median over epochs (the first epoch,
which warms up, is left out). Last line:
``speedup=<reference/ours> flop_fraction=<bound/ours>``.

``--task shakespeare-char``: our loop on the default GPT with nanoGPT's batch of
12 windows of 64 (AdamW, clipping), in tokens per second, against the FLOP
bound (6 · parameters + 12 · layers · context · width) · tokens (nanoGPT's
estimate, attention included), measured the same way. Last line:
``tokens_per_s=... flop_fraction=...``.

``--task-option augment=true [--task-option num_workers=N]``: the Dataset path (RandomCrop with
padding 2 and a horizontal flip per image) against a plain DataLoader loop over the same Dataset,
batch size and model. Last line: ``num_workers=N dataset_path_ratio=<ours/plain>``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from typing import Any

import torch
from _reference import BATCH, SAMPLES, reference_loader, reference_mlp, reference_train, sync
from torch.utils.data import DataLoader

from lrpo_study.tasks import Task, load_task
from lrpo_study.tasks.fashion_mnist import count_parameters
from lrpo_study.training.hyperparameters import resolve
from lrpo_study.training.loop import resolve_device, train


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
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--task", choices=("fashion-mnist", "shakespeare-char"), default="fashion-mnist")
    parser.add_argument("--profile", action="store_true", help="print where one epoch of our loop spends its time, then stop")
    parser.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                        help="fashion-mnist: augment=true (the Dataset path) and num_workers=N")
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(f"device: {name}, torch {torch.__version__}")
    if args.task == "shakespeare-char":
        bench_shakespeare(args, device)
        return

    options = {k: json.loads(v) for k, _, v in (item.partition("=") for item in args.task_option)}
    task = load_task("fashion-mnist", {"split": "paper", "train_size": SAMPLES, **options}, data_dir=args.data_dir, seed=42)
    if args.profile:
        profile_epoch(task, device)
        return
    if options.get("augment"):
        bench_augmented(args, task, device)
        return
    ref = reference_train(reference_loader(args.data_dir), device, args.epochs)
    params = count_parameters(reference_mlp())
    seconds, flops, _ = timed_epochs(task, resolve("fixed", {"epochs": args.epochs + 1}), device, ((BATCH, 784, 256),))
    fraction = statistics.median(6 * params * SAMPLES / f / s for s, f in zip(seconds, flops, strict=True))
    ref_s, ours_s = statistics.median(ref), statistics.median(seconds)
    print(f"reference DataLoader epoch: {ref_s:.3f} s  (epochs: {', '.join(f'{t:.3f}' for t in ref)})")
    print(f"our tensor-loop epoch:      {ours_s:.3f} s  (epochs: {', '.join(f'{t:.3f}' for t in seconds)})")
    print(f"matmul beside each epoch: {', '.join(f'{f / 1e9:.0f}' for f in flops)} GFLOP/s; "
          f"FLOP bound 6*{params}*{SAMPLES} per epoch")
    print(f"speedup={ref_s / ours_s:.2f} flop_fraction={fraction:.2f}")


def bench_augmented(args: argparse.Namespace, task: Task, device: torch.device) -> None:
    """The Dataset path (per-sample RandomCrop + flip) against a plain hand-written DataLoader loop over
    the same Dataset, batch size and model architecture, in this run."""
    plain = DataLoader(task.train, batch_size=BATCH, shuffle=True, num_workers=task.num_workers)  # type: ignore[arg-type]
    ref = reference_train(plain, device, args.epochs)
    seconds, _, _ = timed_epochs(task, resolve("fixed", {"epochs": args.epochs + 1}), device, ((BATCH, 784, 256),))
    ref_s, ours_s = statistics.median(ref), statistics.median(seconds)
    print(f"plain DataLoader loop, same transforms: {ref_s:.3f} s  (epochs: {', '.join(f'{t:.3f}' for t in ref)})")
    print(f"our Dataset path:                      {ours_s:.3f} s  (epochs: {', '.join(f'{t:.3f}' for t in seconds)})")
    print(f"num_workers={task.num_workers} dataset_path_ratio={ours_s / ref_s:.3f}")


def profile_epoch(task: Task, device: torch.device) -> None:
    """torch.profiler over the second of two epochs: self time per operator, the matmuls' share, and
    the time outside any operator (Python, the loop's own bookkeeping)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        seconds = []
        train(task=task, method="fixed", hyperparameters=resolve("fixed", {"epochs": 2}), seed=42, device=device,
              on_epoch=[lambda m: seconds.append(m.seconds)])
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    matmul = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm")) / 1e6
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
    print(f"two epochs {sum(seconds):.3f} s; operators' self time {total:.3f} s, of which matmul (mm, addmm) "
          f"{matmul:.3f} s = {matmul / total:.0%}")


def timed_epochs(
    task: Task, hp: dict[str, Any], device: torch.device, shapes: tuple[tuple[int, int, int], ...],
) -> tuple[list[float], list[float], int]:
    """Seconds of each epoch after the first, the matmul FLOP/s around it (the mean of the rates
    measured just before and just after it; the hook runs outside the epoch's timing), and the
    model's parameter count."""
    rates: list[float] = []
    result = train(task=task, method="fixed", hyperparameters=hp, seed=42, device=device,
                   on_epoch=[lambda _: rates.append(matmul_flops(device, shapes))])
    around = [(before + after) / 2 for before, after in itertools.pairwise(rates)]
    return result.curves["seconds"][1:], around, result.model_parameters


def bench_shakespeare(args: argparse.Namespace, device: torch.device) -> None:
    task = load_task("shakespeare-char", {}, data_dir=args.data_dir, seed=42)
    o = task.options
    hp = resolve("fixed", {"epochs": args.epochs + 1, "optimizer": "adamw", "lr": 1e-3, "beta2": 0.99,
                           "weight_decay": 0.1, "grad_clip": 1.0, "batch_size": 12})
    width, rows = o["n_embd"], 12 * o["block_size"]
    shapes = ((rows, width, 3 * width), (rows, width, 4 * width), (rows, 4 * width, width), (rows, width, 65))
    seconds, flops, params = timed_epochs(task, hp, device, shapes)
    tokens = task.samples_per_epoch * o["block_size"]
    per_token = 6 * params + 12 * o["n_layer"] * o["block_size"] * width
    fractions = [per_token * tokens / f / s for s, f in zip(seconds, flops, strict=True)]
    median_s = statistics.median(seconds)
    print(f"our loop: {tokens / median_s:,.0f} tokens/s ({median_s:.3f} s per epoch of {tokens:,} tokens, {params:,} parameters; "
          f"epochs: {', '.join(f'{t:.3f}' for t in seconds)})")
    print(f"matmul beside each epoch: {', '.join(f'{f / 1e9:.0f}' for f in flops)} GFLOP/s; "
          f"FLOP bound {per_token:,} FLOP/token x {tokens:,} tokens; per-epoch fractions: {', '.join(f'{x:.2f}' for x in fractions)}")
    print(f"tokens_per_s={tokens / median_s:.0f} flop_fraction={statistics.median(fractions):.2f}")


if __name__ == "__main__":
    main()
