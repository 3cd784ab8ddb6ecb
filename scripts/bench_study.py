"""A 100-trial LRPO study (16-epoch trials, early stopping on) with our loop, against the
same trial count through the reference code's DataLoader loop (a few trials, extrapolated).

    python scripts/bench_study.py [--n-trials 100] [--reference-trials 3] [--data-dir D]

The study is ``studies/lrpo.toml`` with the phases fixed at the paper's 10 + 1 + 5
epochs (searching variant, α, fine-tune lr and predictor size), on the
20k/4k holdout split, into a throwaway SQLite file with the trajectory cache
beside it, as ``optimize`` does by default (``--no-cache`` to train every
epoch). The reference arm trains
LRPO-faithful trials the reference way (ToTensor + Normalize per sample,
DataLoader, batch 1024, no pruning, as the reference code has none).
Last line: ``ours_s=<x> reference_s=<y> ratio=<y/x>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import optuna
import torch
from _reference import reference_loader, reference_train
from optuna.trial import TrialState

from lrpo_study.schedules import faithful_alpha
from lrpo_study.study.runner import RunOptions, run_study
from lrpo_study.study.spec import load_spec
from lrpo_study.training.loop import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-trials", type=int, default=100)
    parser.add_argument("--reference-trials", type=int, default=3)
    parser.add_argument("--data-dir")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-cache", action="store_true", help="train every epoch of every trial")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = resolve_device(args.device)
    base = load_spec("studies/lrpo.toml")
    spec = dataclasses.replace(
        base, name="bench-study", n_trials=args.n_trials,
        fixed={**base.fixed, "pretrain_epochs": 10, "finetune_epochs": 5},
        search=tuple(p for p in base.search if p.name not in ("pretrain_epochs", "finetune_epochs")),
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        options = RunOptions(storage=f"sqlite:///{Path(tmp) / 'bench.db'}", device=args.device, data_dir=args.data_dir,
                             cache_dir=None if args.no_cache else str(Path(tmp) / "bench.db.cache"))
        study = run_study(spec, options)
        ours = time.perf_counter() - start
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    epochs = sum(t.user_attrs["epochs"] for t in trials)
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    cached = sum(t.user_attrs.get("cached_epochs", 0) for t in trials)

    loader = reference_loader(args.data_dir)
    losses: list[float] = []

    def lrpo_faithful(loss: float, opt: torch.optim.Optimizer) -> None:
        losses.append(loss)
        lr = 0.05 * faithful_alpha(losses) if len(losses) == 10 else 1e-3 if len(losses) > 10 else 0.05
        for g in opt.param_groups:
            g["lr"] = lr

    per_trial = []
    for i in range(args.reference_trials):
        losses.clear()
        start = time.perf_counter()
        reference_train(loader, device, 16, after_epoch=lrpo_faithful, seed=42 + i)
        per_trial.append(time.perf_counter() - start)
    reference = sum(per_trial) / len(per_trial) * args.n_trials
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else f'cpu x{torch.get_num_threads()} threads'}")
    print(f"ours: {len(trials)} trials ({pruned} pruned, {epochs} epochs in results, {cached} of them from the cache"
          f"{' (off)' if args.no_cache else ''}) in {ours:.1f} s = {ours / 60:.1f} min")
    print(f"reference loop: {args.reference_trials} trials of 16 epochs, {', '.join(f'{t:.1f}' for t in per_trial)} s each; "
          f"x {args.n_trials} = {reference:.0f} s = {reference / 60:.1f} min (no pruning, evaluation not counted)")
    print(f"ours_s={ours:.1f} reference_s={reference:.1f} ratio={reference / ours:.2f}")


if __name__ == "__main__":
    main()
