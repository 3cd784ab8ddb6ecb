"""The trial record: every user_attrs key lrpo_study writes, named once, read back through here.

``study.trial_run.TrialRun`` writes a trial's record; export, confirm, report, the pruning
rule and liveness read it. Keys are module constants so that no reader spells
a string of its own; ``TrialRecord`` is the typed view of a finished trial.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from lrpo_study import metrics

# Study user_attrs
SPEC = "lrpo_study_spec"
CONFIRM_PREFIX = "confirm:"

# Trial user_attrs, set when a trial starts
METHOD = "method"
HYPERPARAMETERS = "hyperparameters"
TASK = "task"
TASK_OPTIONS = "task_options"
SEED = "seed"
DEVICE = "device"
TORCH_VERSION = "torch_version"
VERSION = "lrpo_study_version"
HOST = "host"
PID = "pid"
THREADS = "threads"
REFERENCE = "reference"  # enqueued reference trials: a key of study.objective.REFERENCES
RETRIED_FROM = "retried_from"  # a retried trial: the number of the trial it replaces
RESUMED_FROM_EPOCH = "resumed_from_epoch"
STEPS_PER_EPOCH = "steps_per_epoch"  # optimizer steps in each epoch (a step schedule's length in steps)

# Trial user_attrs of population-based training: each trial is one generation of one member
PBT_MEMBER = "pbt_member"
PBT_GENERATION = "pbt_generation"
PBT_PARENT = "pbt_parent"  # the trial whose final state this generation starts from (None: generation 0)
PBT_START_EPOCH = "pbt_start_epoch"
PBT_EXPLOITED = "pbt_exploited"  # the parent is another member's (exploit), not this member's own last generation
PBT_LRS = "pbt_lrs"  # the lineage's lr, one per generation, this one's last
PBT_KEYS = (PBT_MEMBER, PBT_GENERATION, PBT_PARENT, PBT_START_EPOCH, PBT_EXPLOITED, PBT_LRS)

# Trial user_attrs, set when a trial ends (complete, pruned or diverged); each objective its curves allow is
# recorded too, under its name (``metrics.available``: final_val_loss, train_flops, ...)
CURVES = "curves"
CACHED_EPOCHS = "cached_epochs"
PRUNED_REASON = "pruned_reason"
PRUNED_EPOCH = "pruned_epoch"
STOPPED_EARLY = "stopped_early"  # the loop ended before its planned epochs on purpose (run.stop_early): why
FAIL_REASON = "fail_reason"  # a FAIL trial: the last line of what went wrong (the loop's exception, a timeout)
FAIL_TRACEBACK = "fail_traceback"  # and where, for the loop's own exceptions (its last frames)
ALPHA = "alpha"  # LRPO's jump factor (the schedule's extras add predictor_seconds and probe)


def stored_task(spec: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(task name, options) of a stored study spec (``lrpo_study 0.1`` stored fashion-mnist's in the spec)."""
    if "task" in spec:
        return spec["task"]["name"], {k: v for k, v in spec["task"].items() if k != "name"}
    return "fashion-mnist", {k: spec[k] for k in ("model", "split", "train_size", "val_size") if k in spec}


def is_ours(trial: FrozenTrial) -> bool:
    """Whether lrpo_study trained this trial (another tool may share the storage)."""
    return METHOD in trial.user_attrs and HYPERPARAMETERS in trial.user_attrs


def final_generation(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """A population's last generation (its members as they ended), or ``trials`` as they are when they are
    not PBT generations: an intermediate generation is a piece of a lineage, not a result."""
    generations = [t.user_attrs[PBT_GENERATION] for t in trials if PBT_GENERATION in t.user_attrs]
    if not generations:
        return list(trials)
    return [t for t in trials if t.user_attrs.get(PBT_GENERATION) == max(generations)]


def params_text(trial: FrozenTrial) -> str:
    """A trial's searched values in one line; a PBT member's whole lr path, not its last generation's lr."""
    if PBT_LRS in trial.user_attrs:
        return "lr path " + " → ".join(f"{lr:.4g}" for lr in trial.user_attrs[PBT_LRS])
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())


def our_best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front (or the best trial) among the complete trials lrpo_study made (a population's among
    its final members): a trial added by another tool must neither appear in it nor hide ours by dominating them."""
    signs = [1.0 if d == optuna.study.StudyDirection.MAXIMIZE else -1.0 for d in study.directions]
    ours = final_generation([t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if is_ours(t)])
    scored = [(t, [s * v for s, v in zip(signs, t.values, strict=True)]) for t in ours]

    def dominated(a: list[float]) -> bool:
        return any(all(x >= y for x, y in zip(b, a, strict=True)) and b != a for _, b in scored)

    return sorted((t for t, v in scored if not dominated(v)), key=lambda t: t.number)


@dataclass(frozen=True)
class TrialRecord:
    """The typed view of a finished trial's record."""

    number: int
    method: str
    hyperparameters: dict[str, Any]
    task: str
    task_options: dict[str, Any]
    seed: int
    curves: dict[str, list[float]]
    reference: str | None
    attrs: Mapping[str, Any]

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRecord:
        a = trial.user_attrs
        from lrpo_study.training.hyperparameters import resolve  # noqa: PLC0415  (torch-side; record is read by optuna-side code)

        # Hyperparameters added since the trial ran (grad_clip, cosine's warmup_steps) get their defaults,
        # which are what the trial used.
        hyperparameters = resolve(a[METHOD], a[HYPERPARAMETERS])
        return cls(
            trial.number, a[METHOD], hyperparameters, a.get(TASK, "fashion-mnist"), a.get(TASK_OPTIONS, {}),
            a[SEED], a.get(CURVES, {}), a.get(REFERENCE), a,
        )

    @property
    def epochs(self) -> int:
        return len(self.curves.get(metrics.VAL_LOSS, []))

    @property
    def has_accuracy(self) -> bool:
        return metrics.VAL_ACCURACY in self.curves

    def value(self, objective: metrics.Objective | str) -> float:
        """The trial's value of an objective (``lrpo_study.metrics``), from its curves; NaN where a trial of
        an older version did not record that curve (its FLOPs)."""
        o = objective if isinstance(objective, metrics.Objective) else metrics.parse_objective(objective)
        return o.value(self.curves) if self.curves.get(o.curve) else math.nan


def study_quality(spec: Mapping[str, Any], *, has_accuracy: bool) -> metrics.Objective:
    """The objective that scores the model in a study of this stored spec."""
    return metrics.quality_objective(spec.get("objectives", ()), has_accuracy=has_accuracy)


@dataclass(frozen=True)
class Confirmation:
    """What ``confirm`` stores per re-trained trial: the test metric over fresh seeds."""

    metric: str  # the test split's counterpart of the study's quality objective: test_accuracy, test_loss, test_f1
    values: list[float]
    seeds: list[int]
    train_seconds: list[float]
    epochs: int
    train_flops: list[float] = field(default_factory=list)  # empty before 0.6.0, and for a loop that counts none

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def sd(self) -> float:
        if len(self.values) < 2:
            return 0.0
        m = self.mean
        return (sum((v - m) ** 2 for v in self.values) / (len(self.values) - 1)) ** 0.5

    def to_attr(self) -> dict[str, Any]:
        return {"metric": self.metric, "values": self.values, "seeds": self.seeds, "train_seconds": self.train_seconds,
                "epochs": self.epochs, "mean": self.mean, "sd": self.sd, "train_flops": self.train_flops}

    @classmethod
    def from_attr(cls, record: Mapping[str, Any]) -> Confirmation:
        if "metric" not in record:  # written by lrpo_study 0.1 (accuracy only)
            return cls("test_accuracy", record["test_accuracy"], record["seeds"], record["train_seconds"], record["epochs"])
        return cls(record["metric"], record["values"], record["seeds"], record["train_seconds"], record["epochs"],
                   record.get("train_flops", []))


def confirmations(study_attrs: Mapping[str, Any]) -> dict[int, Confirmation]:
    """Trial number → its confirmation, from a study's user_attrs."""
    return {
        int(key.removeprefix(CONFIRM_PREFIX)): Confirmation.from_attr(value)
        for key, value in study_attrs.items() if key.startswith(CONFIRM_PREFIX)
    }
