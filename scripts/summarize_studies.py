"""Markdown tables of every lrpo_study study in a storage, with `confirm` results.

    python scripts/summarize_studies.py --storage sqlite:///results/studies.db

Per study: trials finished / complete / pruned, epochs trained (and from the
trajectory cache), training seconds per epoch over complete trials (as
recorded: cached epochs keep the seconds they took when computed), best
validation accuracy. Then every confirmed trial
(mean ± sd test accuracy over its seeds) and, per method, the best confirmed
trial of at most 16 epochs against the confirmed 100-epoch fixed-lr baseline.
"""

from __future__ import annotations

import argparse
import statistics

import optuna
from optuna.trial import TrialState

from lrpo_study import record
from lrpo_study.storage import open_storage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", default="sqlite:///results/studies.db")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(args.storage)
    studies = [optuna.load_study(study_name=s.study_name, storage=storage) for s in optuna.get_all_study_summaries(storage)]
    print("| study | method | finished | complete | pruned | epochs trained | from cache | s/epoch (complete) | best val acc (epochs) |")
    print("|---|---|---|---|---|---|---|---|---|")
    confirmed = []
    for st in studies:
        spec = st.user_attrs.get(record.SPEC)
        if spec is None:
            continue
        done = [t for t in st.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)) if record.is_ours(t)]
        complete = [t for t in done if t.state == TrialState.COMPLETE]
        best = max(complete, key=lambda t: t.user_attrs[record.BEST_VAL_ACCURACY])
        print(f"| {st.study_name} | {spec['method']} | {len(done)} | {len(complete)} | {len(done) - len(complete)} | "
              f"{sum(t.user_attrs['epochs'] for t in done)} | {sum(t.user_attrs.get('cached_epochs', 0) for t in done)} | "
              f"{sum(t.user_attrs['train_seconds'] for t in complete) / sum(t.user_attrs['epochs'] for t in complete):.3f} | "
              f"{best.user_attrs['best_val_accuracy']:.4f} ({best.user_attrs['epochs']}) |")
        for number, rec in record.confirmations(st.user_attrs).items():
            confirmed.append((st.study_name, spec["method"], st.trials[number], rec))
    if not confirmed:
        return
    print("\n| study | trial | reference | epochs | val acc (study) | test acc, mean ± sd over seeds | train s (mean) | params |")
    print("|---|---|---|---|---|---|---|---|")
    for name, _, t, rec in sorted(confirmed, key=lambda c: (c[0], c[3].epochs)):
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
        print(f"| {name} | {t.number} | {t.user_attrs.get('reference') or ''} | {rec.epochs} | {t.user_attrs['best_val_accuracy']:.4f} | "
              f"{rec.mean:.4f} ± {rec.sd:.4f} | {statistics.fmean(rec.train_seconds):.1f} | {params} |")
    baseline = [c for c in confirmed if c[2].user_attrs.get("reference") == "baseline"]
    goal = baseline[0][3].mean if baseline else None
    print("\nGoal: the confirmed 100-epoch fixed-lr baseline's test accuracy, "
          + (f"{goal:.4f}" if goal is not None else "not confirmed") + ", in at most 16 epochs.\n")
    print("| method | best confirmed trial with <= 16 epochs | epochs | test acc | reaches the baseline? |")
    print("|---|---|---|---|---|")
    for method in dict.fromkeys(c[1] for c in confirmed):
        short = [c for c in confirmed if c[1] == method and c[3].epochs <= 16]
        if not short:
            print(f"| {method} | — | — | — | no trial of <= 16 epochs on its Pareto front |")
            continue
        name, _, t, rec = max(short, key=lambda c: c[3].mean)
        reached = goal is not None and rec.mean >= goal
        print(f"| {method} | {name} #{t.number} | {rec.epochs} | {rec.mean:.4f} ± {rec.sd:.4f} | "
              f"{'yes' if reached else 'no'} |")


if __name__ == "__main__":
    main()
