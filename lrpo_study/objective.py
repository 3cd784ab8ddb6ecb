"""The Optuna objective: suggest from the spec, train with the one loop, record, return objectives."""

from __future__ import annotations

import math
import os
import platform
from typing import Any

import optuna
import torch

from . import __version__
from .cache import TrajectoryCache
from .checkpoints import CheckpointStore, checkpoint_key
from .config import StudySpec
from .data import Split
from .hyperparameters import resolve
from .pruning import QuantileRule
from .schedules import SCHEDULES
from .train import CURVES, Diverged, EpochMetrics, train

# The two settings every Pareto chart should show: method, hyperparameters, tag.
REFERENCES: dict[str, tuple[str, dict[str, Any]]] = {
    "paper": ("lrpo", {"lr": 0.05, "pretrain_epochs": 10, "finetune_epochs": 5, "finetune_lr": 1e-3, "variant": "faithful"}),
    "baseline": ("fixed", {"lr": 0.05, "epochs": 100}),
}


def suggest(trial: optuna.Trial, spec: StudySpec) -> dict[str, Any]:
    """Fixed values plus one suggestion per active search parameter, in file order."""
    values = dict(spec.fixed)
    for p in spec.search:
        if not p.active(values):
            continue
        if p.type == "int":
            assert p.low is not None and p.high is not None
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        elif p.type == "float":
            assert p.low is not None and p.high is not None
            values[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), step=p.step, log=p.log)
        else:
            values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
    return values


def reference_params(spec: StudySpec, tag: str) -> dict[str, Any] | None:
    """The params to enqueue for reference ``tag``, or None if it does not fit the study's space."""
    method, values = REFERENCES[tag]
    if method != spec.method:
        return None
    reference = resolve(method, values)
    params: dict[str, Any] = {}
    searched = {p.name: p for p in spec.search}
    for name, value in reference.items():
        if name in searched:
            if searched[name].active(reference):
                if not searched[name].contains(value):
                    return None
                params[name] = value
        elif spec.fixed.get(name, resolve(method, {}).get(name)) != value and not _derived(method, name, spec):
            return None
    return params


def _derived(method: str, name: str, spec: StudySpec) -> bool:
    """lrpo's epochs follow from its phase lengths unless the study fixes them."""
    return method == "lrpo" and name == "epochs" and "epochs" not in spec.fixed


class Objective:
    """Callable for ``study.optimize``; one instance per worker, data already on ``device``."""

    def __init__(
        self, spec: StudySpec, data: Split, device: torch.device, *, checkpoints: CheckpointStore | None = None,
        cache: TrajectoryCache | None = None,
    ) -> None:
        self.spec = spec
        self.data = data
        self.device = device
        self.checkpoints = checkpoints
        self.cache = cache

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        spec = self.spec
        hp = resolve(spec.method, suggest(trial, spec))
        for key, value in {
            "method": spec.method, "hyperparameters": hp, "model": spec.model, "split": spec.split,
            "seed": spec.train_seed, "device": str(self.device), "torch_version": torch.__version__,
            "lrpo_study_version": __version__, "host": platform.node(), "pid": os.getpid(),
        }.items():
            trial.set_user_attr(key, value)
        key = checkpoint_key(
            study=trial.study.study_name, method=spec.method, model=spec.model, split=spec.split,
            seed=spec.train_seed, train_size=spec.train_size, val_size=spec.val_size, hp=hp,
        )
        store = self.checkpoints
        resume = store.load(key) if store else None
        if resume:
            trial.set_user_attr("resumed_from_epoch", int(resume["epoch"]))
        curves: dict[str, list[float]] = {name: [] for name in CURVES}  # the latest history the loop showed us
        cached: list[int] = []  # epochs the loop restored from the trajectory cache, also known when pruned
        hook = self._pruning_hook(trial, curves, cached, hp["epochs"], hp.get("pretrain_epochs", 0))
        try:
            result = train(
                method=spec.method, hyperparameters=hp, data=self.data, model_name=spec.model,
                seed=spec.train_seed, device=self.device, on_epoch=[hook], resume=resume,
                on_checkpoint=(lambda state: store.save(key, state)) if store else None,
                cache=self.cache,
            )
        except Diverged as exc:
            self._finish(trial, curves, cached, key)
            trial.set_user_attr("pruned_reason", f"diverged: {exc.reason}")
            trial.set_user_attr("pruned_epoch", exc.epoch)
            raise optuna.TrialPruned(str(exc)) from None
        except optuna.TrialPruned:
            self._finish(trial, curves, cached, key)
            raise
        result.extras.pop("cached_epochs")  # the hook counted them
        self._finish(trial, result.curves, cached, key)
        for name, value in result.extras.items():
            trial.set_user_attr(name, value)
        values = tuple(float(getattr(result, name)) for name in spec.objectives)
        if not all(math.isfinite(v) for v in values):
            trial.set_user_attr("pruned_reason", f"non-finite objective values {values}")
            raise optuna.TrialPruned("non-finite objective values")
        return values[0] if len(values) == 1 else values

    def _finish(self, trial: optuna.Trial, curves: dict[str, list[float]], cached: list[int], key: str) -> None:
        self._record(trial, curves)
        trial.set_user_attr("cached_epochs", len(cached))
        if self.checkpoints:
            self.checkpoints.discard(key)

    def _record(self, trial: optuna.Trial, curves: dict[str, list[float]]) -> None:
        trial.set_user_attr("curves", curves)
        trial.set_user_attr("epochs", len(curves["val_accuracy"]))
        trial.set_user_attr("train_seconds", sum(curves["seconds"]))
        if curves["val_accuracy"]:
            trial.set_user_attr("best_val_accuracy", max(curves["val_accuracy"]))

    def _pruning_hook(
        self, trial: optuna.Trial, curves: dict[str, list[float]], cached: list[int], total_epochs: int, hp_pretrain: int,
    ) -> Any:
        spec = self.spec
        single = len(spec.objectives) == 1
        rule = QuantileRule(spec.pruning)

        def hook(m: EpochMetrics) -> None:
            for name in CURVES:
                curves[name] = list(m.history[name])
            if m.from_cache:
                cached.append(m.epoch)
            reason: str | None = None
            if single and spec.pruning.rule != "none":
                trial.report(self._intermediate(curves), m.epoch)
                if trial.should_prune():
                    reason = f"optuna {spec.pruning.rule} pruner at epoch {m.epoch}"
            elif spec.method == "lrpo" and m.epoch <= hp_pretrain:
                pass  # every LRPO trial's pretrain at the same lr is identical by construction: nothing to decide
            elif not single and spec.pruning.rule == "quantile":
                reason = rule.reason(
                    trial.study, epoch=m.epoch, total_epochs=total_epochs, accuracy=m.val_accuracy,
                    seconds_so_far=sum(curves["seconds"]), length_dependent=SCHEDULES[spec.method].length_dependent,
                )
            if reason is not None:
                trial.set_user_attr("pruned_reason", reason)
                trial.set_user_attr("pruned_epoch", m.epoch)
                raise optuna.TrialPruned(reason)

        return hook

    def _intermediate(self, curves: dict[str, list[float]]) -> float:
        objective = self.spec.objectives[0]
        if objective == "best_val_accuracy":
            return max(curves["val_accuracy"])
        if objective == "final_val_loss":
            return curves["val_loss"][-1]
        return curves["val_accuracy"][-1]
