"""Early stopping on/off: same study, sampler seed and trial count; epochs, wall time, hypervolume.

    python scripts/bench_pruning.py [--study studies/baseline.toml] [--n-trials 40]
        [--train-size 5000] [--val-size 2000] [--data-dir D]

Runs the study twice into throwaway SQLite files: pruning rule "none", then
the file's rule ("quantile" unless it says otherwise). Hypervolume of the
(best val accuracy ↑, train seconds ↓) Pareto front is computed with Optuna's
own WFG implementation against a stated reference point: accuracy
``--ref-accuracy`` and the slowest trial of the run without pruning.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from lrpo_study.study.runner import RunOptions, run_study
from lrpo_study.study.spec import load_spec


def front(study: optuna.Study) -> np.ndarray:
    """(−accuracy, seconds) of complete trials: both minimized, as Optuna's hypervolume expects."""
    return np.array([[-t.values[0], t.values[1]] for t in study.get_trials(states=(TrialState.COMPLETE,))])


def hypervolume_2d(points: np.ndarray, reference: np.ndarray) -> float:
    """The area dominated by ``points`` (both coordinates minimized) up to ``reference``: a sweep
    over the points by their first coordinate (Optuna's own routine is private)."""
    area, best_second = 0.0, float(reference[1])
    for first, second in sorted(map(tuple, points)):
        if second < best_second:
            area += (reference[0] - first) * (best_second - second)
            best_second = second
    return area


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="studies/baseline.toml")
    parser.add_argument("--n-trials", type=int, default=40)
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--val-size", type=int, default=2000)
    parser.add_argument("--ref-accuracy", type=float, default=0.7)
    parser.add_argument("--data-dir")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = load_spec(args.study)
    if base.objectives[0] != "best_val_accuracy" or len(base.objectives) != 2 or not base.parsed_objectives[1].is_cost:
        raise SystemExit("bench_pruning expects objectives [best_val_accuracy, a cost]")
    rule = base.pruning.rule if base.pruning.rule != "none" else "quantile"
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, pruning_rule in (("without pruning", "none"), (f"with {rule} pruning", rule)):
            spec = dataclasses.replace(
                base, name=f"bench-{pruning_rule}", n_trials=args.n_trials,
                task_options={**base.task_options, "train_size": args.train_size, "val_size": args.val_size}, pruning=dataclasses.replace(base.pruning, rule=pruning_rule),
            )
            options = RunOptions(
                storage=f"sqlite:///{Path(tmp) / f'{pruning_rule}.db'}", device=args.device,
                data_dir=args.data_dir, progress=True,
            )
            start = time.perf_counter()
            study = run_study(spec, options)
            wall = time.perf_counter() - start
            trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
            epochs = sum(t.user_attrs["epochs"] for t in trials)
            pruned = sum(t.state == TrialState.PRUNED for t in trials)
            runs[label] = (study, wall, epochs, pruned)
    slowest = max(front(runs["without pruning"][0])[:, 1])
    reference = np.array([-args.ref_accuracy, slowest])
    print(f"study {base.path} ({base.method}), {args.n_trials} trials, sampler {base.sampler} seed {base.seed}, "
          f"{args.train_size}/{args.val_size} images")
    print(f"hypervolume reference point: accuracy {args.ref_accuracy}, {base.objectives[1]} {slowest:.4g}")
    hv = {}
    for label, (study, wall, epochs, pruned) in runs.items():
        points = front(study)
        inside = points[(points < reference).all(axis=1)]
        hv[label] = hypervolume_2d(inside, reference)
        print(f"{label:>26}: epochs trained {epochs:5d}  pruned trials {pruned:3d}  wall {wall:7.1f} s  "
              f"hypervolume {hv[label]:.5f}  best acc {-points[:, 0].min():.4f}")
    (_, _, e0, _), (_, _, e1, _) = runs.values()
    h0, h1 = hv.values()
    print(f"epochs_saved={1 - e1 / e0:.3f} hypervolume_ratio={h1 / h0 if h0 else float('nan'):.3f}")


if __name__ == "__main__":
    main()
