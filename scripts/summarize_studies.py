"""Markdown tables of every lrpo_study study in a storage, with `confirm` results.

    python scripts/summarize_studies.py --storage sqlite:///results/studies.db
    python scripts/summarize_studies.py --storage sqlite:///results/fashion16.db --goal 0.8742
    python scripts/summarize_studies.py --storage sqlite:///results/shakespeare.db --goal 1.88 --max-epochs 6

Per study: trials finished / complete / pruned, epochs trained (and from the
trajectory cache), training seconds per epoch over complete trials (as
recorded: cached epochs keep the seconds they took when computed), the best
trial's first objective. Then every confirmed trial (mean ± sd of its test metric over its
seeds) and, per method, the best confirmed trial of at most ``--max-epochs``
epochs against the goal: ``--goal``, else the confirmed fixed-lr baseline
reference (accuracy: reached when the mean is at least the goal; loss: at
most).
"""

from __future__ import annotations

import argparse
import statistics

import optuna
from optuna.trial import FrozenTrial, TrialState

from lrpo_study.study.storage import open_storage
from lrpo_study.views import record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", default="sqlite:///results/studies.db")
    parser.add_argument("--goal", type=float, help="test metric to reach (default: the confirmed baseline reference's)")
    parser.add_argument("--max-epochs", type=int, default=16, help="budget of the goal question (default 16)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(args.storage)
    studies = [optuna.load_study(study_name=s.study_name, storage=storage) for s in optuna.get_all_study_summaries(storage)]
    print("| study | method | finished | complete | pruned | epochs trained | from cache | s/epoch (complete) | best trial: val (epochs) |")
    print("|---|---|---|---|---|---|---|---|---|")
    confirmed: list[tuple[str, str, FrozenTrial, record.Confirmation]] = []
    for st in studies:
        spec = st.user_attrs.get(record.SPEC)
        if spec is None:
            continue
        done = [t for t in st.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)) if record.is_ours(t)]
        complete = [t for t in done if t.state == TrialState.COMPLETE]
        sign = 1.0 if st.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1.0
        best = max(complete, key=lambda t: sign * t.values[0])
        print(f"| {st.study_name} | {spec['method']} | {len(done)} | {len(complete)} | {len(done) - len(complete)} | "
              f"{sum(t.user_attrs['epochs'] for t in done)} | {sum(t.user_attrs.get('cached_epochs', 0) for t in done)} | "
              f"{sum(t.user_attrs['train_seconds'] for t in complete) / sum(t.user_attrs['epochs'] for t in complete):.3f} | "
              f"{(st.metric_names or ['value'])[0]} {best.values[0]:.4f} ({best.user_attrs['epochs']}) |")
        for number, rec in record.confirmations(st.user_attrs).items():
            confirmed.append((st.study_name, spec["method"], st.trials[number], rec))
    if not confirmed:
        return
    accuracy = confirmed[0][3].metric == "test_accuracy"
    metric = "test acc" if accuracy else "test loss"
    print(f"\n| study | trial | reference | epochs | val (study) | {metric}, mean ± sd over seeds | train s (mean) | params |")
    print("|---|---|---|---|---|---|---|---|")
    for name, _, t, rec in sorted(confirmed, key=lambda c: (c[0], c[3].epochs, c[2].number)):
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
        print(f"| {name} | {t.number} | {t.user_attrs.get('reference') or ''} | {rec.epochs} | "
              f"{t.values[0]:.4f} | {rec.mean:.4f} ± {rec.sd:.4f} | "
              f"{statistics.fmean(rec.train_seconds):.1f} | {params} |")
    goal = args.goal
    if goal is None:
        baseline = [c for c in confirmed if c[2].user_attrs.get("reference") == "baseline"]
        goal = baseline[0][3].mean if baseline else None
    print(f"\nGoal: {metric} " + (f"{goal:.4f}" if goal is not None else "(not given, no confirmed baseline)")
          + f" in at most {args.max_epochs} epochs (mean over seeds).\n")
    print(f"| method | best confirmed trial with <= {args.max_epochs} epochs | epochs | {metric} | reaches the goal? |")
    print("|---|---|---|---|---|")
    sign = 1.0 if accuracy else -1.0
    for method in dict.fromkeys(c[1] for c in confirmed):
        short = [c for c in confirmed if c[1] == method and c[3].epochs <= args.max_epochs]
        if not short:
            print(f"| {method} | — | — | — | no confirmed trial of <= {args.max_epochs} epochs |")
            continue
        name, _, t, rec = max(short, key=lambda c: sign * c[3].mean)
        reached = goal is not None and sign * rec.mean >= sign * goal
        gap = "" if goal is None else f" ({rec.mean - goal:+.4f})"
        print(f"| {method} | {name} #{t.number} | {rec.epochs} | {rec.mean:.4f} ± {rec.sd:.4f}{gap} | "
              f"{'yes' if reached else 'no'} |")


if __name__ == "__main__":
    main()
