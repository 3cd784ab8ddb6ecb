"""Re-train chosen trials with fresh seeds and score them on the untouched test set.

For each study: its Pareto trials (or its best ``top`` trials by best
validation accuracy) plus its reference trials (paper / baseline) are trained
again on the ``holdout`` split with each seed (a new train/validation carve,
initialization, dropout and batch order), and the final model is evaluated
on the official test set, which no study ever saw. Results go into the
study's user_attrs as ``confirm:<trial number>``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from .data import load_split
from .train import resolve_device, train

ATTR_PREFIX = "confirm:"


@dataclass(frozen=True)
class Confirmation:
    study: str
    method: str
    trial: int
    reference: str | None
    epochs: int
    seeds: list[int]
    test_accuracy: list[float]
    train_seconds: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.test_accuracy)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.test_accuracy) if len(self.test_accuracy) > 1 else 0.0

    def record(self) -> dict[str, Any]:
        return {
            "seeds": self.seeds, "test_accuracy": self.test_accuracy, "train_seconds": self.train_seconds,
            "mean_test_accuracy": self.mean, "sd_test_accuracy": self.sd, "epochs": self.epochs,
        }


def chosen_trials(study: optuna.Study, top: int | None) -> list[FrozenTrial]:
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "hyperparameters" in t.user_attrs]
    if top is not None:
        picked = sorted(complete, key=lambda t: -t.user_attrs["best_val_accuracy"])[:top]
    elif len(study.directions) > 1:
        picked = list(study.best_trials)
    else:
        picked = [study.best_trial]
    picked += [t for t in complete if t.user_attrs.get("reference") and t not in picked]
    return sorted(picked, key=lambda t: t.number)


def confirm_study(
    study: optuna.Study, *, seeds: list[int], top: int | None, device_name: str, data_dir: str | None,
) -> list[Confirmation]:
    spec = study.user_attrs["lrpo_study_spec"]
    device = resolve_device(device_name)
    splits = {
        seed: load_split(split="holdout", data_dir=data_dir, seed=seed, train_size=spec["train_size"], val_size=spec["val_size"]).to(device)
        for seed in seeds
    }
    out = []
    for trial in chosen_trials(study, top):
        attrs = trial.user_attrs
        accs, secs = [], []
        for seed in seeds:
            result = train(method=attrs["method"], hyperparameters=attrs["hyperparameters"], data=splits[seed],
                           model_name=attrs["model"], seed=seed, device=device, progress=True)
            accs.append(float(result.extras["test_accuracy"]))
            secs.append(result.train_seconds)
        c = Confirmation(study.study_name, attrs["method"], trial.number, attrs.get("reference"), attrs["epochs"], seeds, accs, secs)
        study.set_user_attr(f"{ATTR_PREFIX}{trial.number}", c.record())
        out.append(c)
    return out


def confirmation_table(results: list[Confirmation]) -> str:
    lines = [f"{'study':>16} {'method':>10} {'trial':>5} {'ref':>8} {'epochs':>6} {'test accuracy (mean ± sd)':>26} {'train s':>8}"]
    for c in results:
        lines.append(
            f"{c.study:>16} {c.method:>10} {c.trial:>5} {c.reference or '':>8} {c.epochs:>6} "
            f"{c.mean:>18.4f} ± {c.sd:.4f} {statistics.fmean(c.train_seconds):>8.1f}"
        )
    return "\n".join(lines)
