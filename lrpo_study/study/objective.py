"""The Optuna objective: suggest from the spec, train with the one loop, record, return objectives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from lrpo_study._version import __version__
from lrpo_study.errors import UserError
from lrpo_study.tasks import BUILTIN_TASKS, Task, task_options
from lrpo_study.training.cache import TrajectoryCache
from lrpo_study.training.checkpoints import CheckpointStore, checkpoint_key
from lrpo_study.training.hyperparameters import resolve, with_defaults
from lrpo_study.training.loop import Diverged, EpochMetrics, train
from lrpo_study.views import record

from .spec import StudySpec
from .trial_run import TrialRun, TrialRunError


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
        self._identity: str | None = None

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        return self.run(trial, self.spec)

    def run(self, trial: optuna.Trial, spec: StudySpec) -> float | tuple[float, ...]:
        """Train ``trial`` as ``spec`` says (this study's spec, or a PBT generation's: its lineage fixed)."""
        task = self.task
        run = TrialRun(trial, spec, defaults=task.defaults, task=spec.task, device=self.device,
                       artifact_dir=self.artifact_dir, has_accuracy=task.has_accuracy)
        hp = run.hyperparameters
        trial.set_user_attr(record.STEPS_PER_EPOCH, task.steps_per_epoch(hp["batch_size"]))
        key = self.checkpoint_key(trial.study.study_name, hp)
        store = self.checkpoints
        resume = store.load(key) if store else None
        if resume:
            trial.set_user_attr(record.RESUMED_FROM_EPOCH, int(resume["epoch"]))

        def hook(m: EpochMetrics) -> None:  # the loop shows its whole history: epochs resumed or cached included
            run.curves.update({name: list(m.history[name]) for name in task.curves()})
            run.observe_epoch(m.epoch, from_cache=m.from_cache)

        try:
            result = train(
                task=task, method=spec.method, hyperparameters=hp, seed=spec.train_seed, device=self.device,
                on_epoch=[hook], resume=resume, on_checkpoint=(lambda state: store.save(key, state)) if store else None,
                cache=self.cache,
            )
        except Diverged as exc:
            self._discard(key)
            run.diverged(exc.reason, exc.epoch)
        except optuna.TrialPruned:
            self._discard(key)
            raise
        self._discard(key)
        result.extras.pop(record.CACHED_EPOCHS)  # the hook counted them
        run.extras.update(result.extras)
        return run.finish()

    def _discard(self, key: str) -> None:
        if self.checkpoints:
            self.checkpoints.discard(key)

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


class LoopObjective:
    """Callable for ``study.optimize`` when the study file names the user's training loop instead of a task:
    the loop receives the trial's ``TrialRun`` and trains; misuse of the run stops the study (bad input)."""

    def __init__(self, spec: StudySpec, loop: Callable[[TrialRun], Any], device: torch.device, *,
                 artifact_dir: str | None = None) -> None:
        self.spec, self.loop, self.device, self.artifact_dir = spec, loop, device, artifact_dir

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        run = TrialRun(trial, self.spec, device=self.device, artifact_dir=self.artifact_dir)
        try:
            self.loop(run)
            return run.finish()
        except TrialRunError as exc:
            raise UserError(f"loop {self.spec.loop!r}: {exc}") from None
