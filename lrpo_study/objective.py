"""The Optuna objective: suggest from the spec, train with the one loop, record, return objectives."""

from __future__ import annotations

import math
import os
import platform
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from . import __version__, record
from .cache import TrajectoryCache
from .checkpoints import CheckpointStore, checkpoint_key
from .config import StudySpec
from .hyperparameters import resolve, with_defaults
from .pruning import QuantileRule
from .schedules import SCHEDULES
from .tasks import BUILTIN_TASKS, Task, task_options
from .train import Diverged, EpochMetrics, curve_names, train
from .trial_view import publish


@dataclass(frozen=True)
class Reference:
    """A published setting enqueued into every study of its task and method, so the Pareto chart shows it."""

    task: str
    method: str
    values: dict[str, Any]
    task_options: dict[str, Any] = field(default_factory=dict)  # only studies with these options get it


# nanoGPT's shakespeare_char CPU recipe: 2000 iterations of batch 12 = 10 epochs of the task.
_NANOGPT_ADAMW = {"optimizer": "adamw", "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1, "grad_clip": 1.0, "batch_size": 12}
_NANOGPT_MODEL = {
    "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "dropout": 0.0, "bias": False, "epoch_windows": 2400}

REFERENCES: dict[str, Reference] = {
    "paper": Reference("fashion-mnist", "lrpo", {
        "lr": 0.05, "pretrain_epochs": 10, "finetune_epochs": 5, "finetune_lr": 1e-3, "variant": "faithful"}),
    "baseline": Reference("fashion-mnist", "fixed", {"lr": 0.05, "epochs": 100}),
    "nanogpt": Reference("shakespeare-char", "cosine", {
        **_NANOGPT_ADAMW, "lr": 1e-3, "warmup_steps": 100, "eta_min": 1e-4, "epochs": 10}, _NANOGPT_MODEL),
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
    ref = REFERENCES[tag]
    if (ref.task, ref.method) != (spec.task, spec.method):
        return None
    options = task_options(spec.task, spec.task_options)
    if any(options.get(k) != v for k, v in ref.task_options.items()):
        return None
    method = ref.method
    reference = resolve(method, ref.values)
    # What the study trains with where it searches nothing (references are of built-in tasks).
    held = resolve(method, with_defaults(method, spec.fixed, BUILTIN_TASKS[ref.task].defaults))
    params: dict[str, Any] = {}
    searched = {p.name: p for p in spec.search}
    for name, value in reference.items():
        if name in searched:
            if searched[name].active(reference):
                if not searched[name].contains(value):
                    return None
                params[name] = value
        elif held.get(name) != value and not _derived(method, name, spec):
            return None
    return params


def _derived(method: str, name: str, spec: StudySpec) -> bool:
    """lrpo's epochs follow from its phase lengths unless the study fixes them."""
    return method == "lrpo" and name == "epochs" and "epochs" not in spec.fixed


class Objective:
    """Callable for ``study.optimize``; one instance per worker, the task's data already on ``device``."""

    def __init__(
        self, spec: StudySpec, task: Task, device: torch.device, *, checkpoints: CheckpointStore | None = None,
        cache: TrajectoryCache | None = None, artifact_dir: str | None = None,
    ) -> None:
        self.spec = spec
        self.task = task
        self.device = device
        self.checkpoints = checkpoints
        self.cache = cache
        self.artifact_dir = artifact_dir
        self._publish_failed = False
        self._identity: str | None = None

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        spec = self.spec
        hp = resolve(spec.method, with_defaults(spec.method, suggest(trial, spec), self.task.defaults))
        for key, value in {
            record.METHOD: spec.method, record.HYPERPARAMETERS: hp, record.TASK: spec.task,
            record.TASK_OPTIONS: spec.task_options, record.SEED: spec.train_seed, record.DEVICE: str(self.device),
            record.TORCH_VERSION: torch.__version__, record.VERSION: __version__, record.HOST: platform.node(),
            record.PID: os.getpid(), record.THREADS: torch.get_num_threads(),
            record.STEPS_PER_EPOCH: self.task.steps_per_epoch(hp["batch_size"]),
        }.items():
            trial.set_user_attr(key, value)
        key = self.checkpoint_key(trial.study.study_name, hp)
        store = self.checkpoints
        resume = store.load(key) if store else None
        if resume:
            trial.set_user_attr(record.RESUMED_FROM_EPOCH, int(resume["epoch"]))
        curves: dict[str, list[float]] = {name: [] for name in curve_names(self.task)}  # the latest history the loop showed us
        cached: list[int] = []  # epochs the loop restored from the trajectory cache, also known when pruned
        hook = self._pruning_hook(trial, curves, cached, hp["epochs"], hp.get("pretrain_epochs", 0))
        try:
            result = train(
                task=self.task, method=spec.method, hyperparameters=hp, seed=spec.train_seed, device=self.device,
                on_epoch=[hook], resume=resume, on_checkpoint=(lambda state: store.save(key, state)) if store else None,
                cache=self.cache,
            )
        except Diverged as exc:
            self._finish(trial, curves, cached, key)
            trial.set_user_attr(record.PRUNED_REASON, f"diverged: {exc.reason}")
            trial.set_user_attr(record.PRUNED_EPOCH, exc.epoch)
            self._publish(trial, "diverged")
            raise optuna.TrialPruned(str(exc)) from None
        except optuna.TrialPruned:
            self._finish(trial, curves, cached, key)
            self._publish(trial, "pruned")
            raise
        result.extras.pop(record.CACHED_EPOCHS)  # the hook counted them
        self._finish(trial, result.curves, cached, key)
        for name, value in result.extras.items():
            trial.set_user_attr(name, value)
        values = tuple(float(getattr(result, name)) for name in spec.objectives)
        if not all(math.isfinite(v) for v in values):
            trial.set_user_attr(record.PRUNED_REASON, f"non-finite objective values {values}")
            self._publish(trial, "pruned")
            raise optuna.TrialPruned("non-finite objective values")
        self._publish(trial, "complete")
        return values[0] if len(values) == 1 else values

    def checkpoint_key(self, study_name: str, hp: dict[str, Any]) -> str:
        """Names everything that decides a trial's state after an epoch: a checkpoint under it is that trial's."""
        if self._identity is None:  # an edited model or loss never resumes another's checkpoint (built once per worker)
            self._identity = self.task.model_identity(seed=self.spec.train_seed)
        spec = self.spec
        return checkpoint_key(
            study=study_name, method=spec.method, task=spec.task, task_options=spec.task_options,
            data=self.task.fingerprint, model=self._identity, seed=spec.train_seed, hp=hp,
            threads=torch.get_num_threads(),  # another thread count sums in another order: another trajectory
            # So does another implementation (0.3.0: fused optimizer kernels; 0.4.0: schedule state without _last_lr).
            version=__version__,
        )

    def _publish(self, trial: optuna.Trial, outcome: str) -> None:
        """The dashboard's figure and note; a failure there must not cost the trial its result."""
        try:
            publish(trial, outcome=outcome, artifact_dir=self.artifact_dir)
        except Exception as exc:  # noqa: BLE001  (a full disk, a read-only artifact folder, ...)
            if not self._publish_failed:
                warnings.warn(f"could not write trial {trial.number}'s dashboard figure or note: {exc}", stacklevel=2)
            self._publish_failed = True

    def _finish(self, trial: optuna.Trial, curves: dict[str, list[float]], cached: list[int], key: str) -> None:
        trial.set_user_attr(record.CURVES, curves)
        trial.set_user_attr(record.EPOCHS, len(curves["val_loss"]))
        trial.set_user_attr(record.TRAIN_SECONDS, sum(curves["seconds"]))
        if curves.get("val_accuracy"):
            trial.set_user_attr(record.BEST_VAL_ACCURACY, max(curves["val_accuracy"]))
        if curves["val_loss"]:
            trial.set_user_attr(record.FINAL_VAL_LOSS, curves["val_loss"][-1])
        trial.set_user_attr(record.CACHED_EPOCHS, len(cached))
        if self.checkpoints:
            self.checkpoints.discard(key)

    def _pruning_hook(
        self, trial: optuna.Trial, curves: dict[str, list[float]], cached: list[int], total_epochs: int, hp_pretrain: int,
    ) -> Any:
        spec = self.spec
        single = len(spec.objectives) == 1
        metric = record.quality_metric(spec.objectives, has_accuracy=self.task.has_accuracy)  # as report scores it
        rule = QuantileRule(spec.pruning, higher_is_better=record.higher_is_better(metric))
        curve = "val_loss" if metric == "final_val_loss" else "val_accuracy"

        def hook(m: EpochMetrics) -> None:
            for name in curves:
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
                    trial.study, epoch=m.epoch, total_epochs=total_epochs, value=curves[curve][-1],
                    seconds_so_far=sum(curves["seconds"]), length_dependent=SCHEDULES[spec.method].length_dependent,
                )
            if reason is not None:
                trial.set_user_attr(record.PRUNED_REASON, reason)
                trial.set_user_attr(record.PRUNED_EPOCH, m.epoch)
                raise optuna.TrialPruned(reason)

        return hook

    def _intermediate(self, curves: dict[str, list[float]]) -> float:
        objective = self.spec.objectives[0]
        if objective == "best_val_accuracy":
            return max(curves["val_accuracy"])
        if objective == "final_val_loss":
            return curves["val_loss"][-1]
        return curves["val_accuracy"][-1]
