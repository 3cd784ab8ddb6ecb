"""Early stopping: Optuna's pruners for one objective, our rule for several.

Optuna's pruners refuse multi-objective studies (``trial.report`` is single
objective only), so multi-objective studies use ``QuantileRule``:

    At epoch e (e > warmup_epochs, and not the trial's last epoch), look at
    the finished trials (complete or pruned) that trained at least e epochs —
    for schedules whose lr depends on the planned length (cosine, one-cycle,
    LRPO's phases), only those planned for at least as many epochs as this
    trial: a 10-epoch cosine run is far more annealed at epoch 8 than a
    30-epoch one, and comparing them would prune long runs unfairly. If there
    are at least ``min_trials`` of them, prune when the trial's
    quality (validation accuracy, loss, or the metric the study maximizes) at e is strictly below their ``quantile``-quantile at
    e **and** its cost so far (the study's cost objective: FLOPs, samples, or
    seconds) is not lower than their median at e by more than
    ``cost_tolerance`` (a trial that lags while being clearly cheaper may
    still reach the cheap end of the Pareto front).

Strictly below: trials that are identical by construction at epoch e (the
shared pretrain of an LRPO study) never prune each other there. The reason and
epoch go into the trial's user_attrs (``pruned_reason``, ``pruned_epoch``).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from lrpo_study import metrics
from lrpo_study.views import record

from .spec import PruningSpec


def optuna_pruner(spec: PruningSpec) -> optuna.pruners.BasePruner:
    """The Optuna pruner for a single-objective study's ``pruning.rule``. Trials report epoch e as step e
    (from 1), and Optuna's pruners may stop a trial at the warm-up step itself: ``warmup_epochs`` means
    never at or before that epoch, so the first step they may stop at is one later."""
    first = spec.warmup_epochs + 1
    if spec.rule == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.min_trials, n_warmup_steps=first)
    if spec.rule == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first)
    if spec.rule == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first)
    return optuna.pruners.NopPruner()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class QuantileRule:
    """The rule above on the study's ``quality`` objective's curve (validation accuracy, loss or a metric of
    the user's): for a lower-is-better one, "below the quantile" reads "above the (1 − q)-quantile". "At no
    lower cost" compares the curve of the study's ``cost`` objective (FLOPs, samples, seconds) so far."""

    spec: PruningSpec
    quality: metrics.Objective = metrics.BEST_VAL_ACCURACY
    cost: metrics.Objective = metrics.TRAIN_SECONDS

    def reason(
        self, study: optuna.Study, *, epoch: int, total_epochs: int, curves: Mapping[str, Sequence[float]],
        length_dependent: bool = True,
    ) -> str | None:
        """Why the trial with these ``curves`` (``epoch`` epochs so far) should stop, or None to go on."""
        if epoch <= self.spec.warmup_epochs or epoch >= total_epochs:
            return None
        curve, cost_curve = self.quality.curve, self.cost.curve
        others, costs = [], []
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            theirs = t.user_attrs.get(record.CURVES)
            planned = t.user_attrs.get(record.HYPERPARAMETERS, {}).get("epochs", 0)
            comparable = planned >= total_epochs or not length_dependent
            if theirs and len(theirs.get(curve, [])) >= epoch and cost_curve in theirs and comparable:
                others.append(theirs[curve][epoch - 1])
                costs.append(sum(theirs[cost_curve][:epoch]))
        if len(others) < self.spec.min_trials:
            return None
        higher = self.quality.higher_is_better
        value, spent = curves[curve][-1], sum(curves[cost_curve])
        q = self.spec.quantile if higher else 1.0 - self.spec.quantile
        threshold = _quantile(others, q)
        behind = value < threshold if higher else value > threshold
        cheap = spent < statistics.median(costs) * (1.0 - self.spec.cost_tolerance)
        if behind and not cheap:
            return (
                f"{metrics.label(curve)} {value:.4f} {'<' if higher else '>'} {q:g}-quantile {threshold:.4f} of "
                f"{len(others)} trials at epoch {epoch}, at no lower {metrics.label(cost_curve)}"
            )
        return None
