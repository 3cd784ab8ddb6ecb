"""The same study with and without the trajectory cache (default: the 60-trial LRPO study).

    python scripts/bench_cache.py [--study studies/lrpo.toml] [--n-trials 60] [--data-dir D]
        [--train-size N --val-size M]   # fashion-mnist: smaller than the study file's, for a quick check
    python scripts/bench_cache.py --study studies/shakespeare-wsd.toml --n-trials 16

Both runs use the same sampler seed. So that the sampler sees the same values
in both runs (and so suggests the same parameters), the objectives are the
deterministic pair (the study's quality objective, epochs ↓) and the pruning
rule's cost condition is switched off (``cost_tolerance = 1``); training
seconds are still recorded. Prints wall seconds, epochs actually computed, and whether
every trial's parameters, state and objective values agree between the runs.
Last line: ``speedup=<x> epochs_computed_ratio=<y> identical=<True|False>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import optuna

from lrpo_study.study.runner import RunOptions, run_study
from lrpo_study.study.spec import load_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="studies/lrpo.toml")
    parser.add_argument("--n-trials", type=int, default=60)
    parser.add_argument("--data-dir")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-size", type=int, help="default: the study file's")
    parser.add_argument("--val-size", type=int, help="default: the study file's")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = load_spec(args.study)
    quality = base.quality(has_accuracy=True).spelling
    sizes = {k: v for k, v in (("train_size", args.train_size), ("val_size", args.val_size)) if v is not None}
    spec = dataclasses.replace(
        base, name="bench-cache", n_trials=args.n_trials, objectives=(quality, "epochs"),
        pruning=dataclasses.replace(base.pruning, cost_tolerance=1.0), task_options={**base.task_options, **sizes},
    )
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, db, cache_dir in (("without cache", "plain.db", None), ("with cache", "cached.db", str(Path(tmp) / "cache"))):
            options = RunOptions(storage=f"sqlite:///{Path(tmp) / db}", device=args.device,
                                 data_dir=args.data_dir, cache_dir=cache_dir)
            start = time.perf_counter()
            study = run_study(spec, options)
            runs[label] = (study.trials, time.perf_counter() - start)
    (plain, t_plain), (cached, t_cached) = runs.values()
    computed = {label: sum(t.user_attrs["epochs"] - t.user_attrs.get("cached_epochs", 0) for t in trials)
                for label, (trials, _) in runs.items()}
    identical = len(plain) == len(cached) and all(
        a.params == b.params and a.state == b.state and a.values == b.values
        and a.user_attrs["curves"]["val_loss"] == b.user_attrs["curves"]["val_loss"]
        for a, b in zip(plain, cached, strict=True)
    )
    print(f"study {args.study} ({spec.method}), {args.n_trials} trials, sampler {spec.sampler} seed {spec.seed}")
    for label, (trials, wall) in runs.items():
        total = sum(t.user_attrs["epochs"] for t in trials)
        print(f"{label:>14}: wall {wall:7.1f} s  epochs in results {total:5d}  epochs computed {computed[label]:5d}")
    served = sum(t.user_attrs.get("cached_epochs", 0) for t in cached) / max(1, sum(t.user_attrs["epochs"] for t in cached))
    print(f"every trial's params, state, objective values and validation loss curve agree: {identical}")
    print(f"share of epochs served from the cache: {served:.0%}")
    print(f"speedup={t_plain / t_cached:.2f} epochs_computed_ratio={computed['without cache'] / max(1, computed['with cache']):.2f} identical={identical}")


if __name__ == "__main__":
    main()
