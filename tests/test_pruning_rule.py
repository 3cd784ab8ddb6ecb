"""The multi-objective quantile rule on a real (in-memory) Optuna study."""

from __future__ import annotations

import optuna

from lrpo_study import metrics
from lrpo_study.study.pruning import QuantileRule
from lrpo_study.study.spec import PruningSpec


def so_far(epoch: int, value: float, seconds: float) -> dict[str, list[float]]:
    """A running trial's curves at ``epoch``: its accuracy now ``value``, ``seconds`` spent in all."""
    return {"val_accuracy": [0.0] * (epoch - 1) + [value], "seconds": [seconds / epoch] * epoch}


def finished(study: optuna.Study, *, planned: int, accs: list[float], seconds: float = 1.0) -> None:
    curves = {"val_accuracy": accs, "seconds": [seconds] * len(accs)}
    study.add_trial(optuna.trial.create_trial(
        values=[max(accs), seconds * len(accs)], user_attrs={"curves": curves, "hyperparameters": {"epochs": planned}},
    ))


def test_rule_prunes_laggards_only_against_runs_at_least_as_long() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    rule = QuantileRule(PruningSpec(rule="quantile", warmup_epochs=1, min_trials=2, quantile=0.5))
    for acc in (0.80, 0.82, 0.84):  # short runs: well annealed by epoch 3
        finished(study, planned=4, accs=[0.5, 0.7, acc, acc])
    # A 20-epoch run behind them at epoch 3 is not compared with shorter runs.
    assert rule.reason(study, epoch=3, total_epochs=20, curves=so_far(3, 0.6, 3.0)) is None
    # A 4-epoch run behind them is pruned, with the reason.
    reason = rule.reason(study, epoch=3, total_epochs=4, curves=so_far(3, 0.6, 3.0))
    assert reason is not None and "0.5-quantile" in reason
    for acc in (0.70, 0.72):
        finished(study, planned=20, accs=[0.4, 0.5, acc] + [0.9] * 17)
    assert rule.reason(study, epoch=3, total_epochs=20, curves=so_far(3, 0.6, 3.0)) is not None
    # Not at or before warm-up, not on the last epoch, not when clearly cheaper, not when level.
    assert rule.reason(study, epoch=1, total_epochs=20, curves=so_far(1, 0.0, 9.0)) is None
    assert rule.reason(study, epoch=4, total_epochs=4, curves=so_far(4, 0.0, 9.0)) is None
    assert rule.reason(study, epoch=3, total_epochs=20, curves=so_far(3, 0.6, 1.0)) is None
    assert rule.reason(study, epoch=3, total_epochs=20, curves=so_far(3, 0.72, 3.0)) is None


def test_length_independent_schedules_compare_with_every_run() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    rule = QuantileRule(PruningSpec(rule="quantile", warmup_epochs=1, min_trials=2, quantile=0.5))
    for acc in (0.80, 0.82, 0.84):
        finished(study, planned=4, accs=[0.5, 0.7, acc, acc])
    # A fixed-lr run's epoch 3 does not depend on its length: shorter runs are fair references.
    assert rule.reason(study, epoch=3, total_epochs=20, curves=so_far(3, 0.6, 3.0), length_dependent=False)
    assert rule.reason(study, epoch=3, total_epochs=20, curves=so_far(3, 0.6, 3.0), length_dependent=True) is None


def test_the_rule_follows_the_study_s_own_metric_and_cost() -> None:
    """A study maximizing a metric of the user's (val_f1) with a counted cost prunes on that metric's curve and
    compares that cost, never the clock."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    quality, cost = metrics.parse_objective("max:final_val_f1"), metrics.parse_objective("train_flops")
    rule = QuantileRule(PruningSpec(rule="quantile", warmup_epochs=1, min_trials=2, quantile=0.5), quality=quality, cost=cost)
    for f1 in (0.80, 0.82, 0.84):
        curves = {"val_f1": [0.5, 0.7, f1, f1], "flops": [100.0] * 4, "val_accuracy": [0.1] * 4, "seconds": [9.0] * 4}
        study.add_trial(optuna.trial.create_trial(values=[f1, 400.0], user_attrs={"curves": curves, "hyperparameters": {"epochs": 4}}))
    behind = {"val_f1": [0.5, 0.6, 0.6], "flops": [100.0] * 3, "val_accuracy": [0.9] * 3, "seconds": [0.1] * 3}
    reason = rule.reason(study, epoch=3, total_epochs=4, curves=behind)
    assert reason is not None and reason.startswith("validation f1 0.6000 < 0.5-quantile") and "training FLOPs" in reason
    cheaper = {**behind, "flops": [10.0] * 3}  # clearly cheaper in FLOPs: kept for the cheap end of the front
    assert rule.reason(study, epoch=3, total_epochs=4, curves=cheaper) is None
    ahead = {**behind, "val_f1": [0.5, 0.9, 0.9]}
    assert rule.reason(study, epoch=3, total_epochs=4, curves=ahead) is None
