"""The trial record: every user_attrs key lrpo_study writes, named once, read back through here.

``study.trial_run.TrialRun`` writes a trial's record; export, confirm, report, the pruning
rule and liveness read it. Keys are module constants so that no reader spells
a string of its own; ``TrialRecord`` is the typed view of a finished trial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

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

# Trial user_attrs, set when a trial ends (complete, pruned or diverged)
CURVES = "curves"
EPOCHS = "epochs"
TRAIN_SECONDS = "train_seconds"
BEST_VAL_ACCURACY = "best_val_accuracy"
FINAL_VAL_LOSS = "final_val_loss"
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
    train_seconds: float
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
            a[SEED], a.get(CURVES, {}), a.get(TRAIN_SECONDS, 0.0), a.get(REFERENCE), a,
        )

    @property
    def epochs(self) -> int:
        return len(self.curves.get("val_loss", []))

    @property
    def has_accuracy(self) -> bool:
        return "val_accuracy" in self.curves

    def quality(self, metric: str) -> float:
        """The trial's value of a quality metric (``QUALITY_METRICS``) from its curves."""
        curve, pick = _QUALITY_CURVES[metric]
        return pick(self.curves[curve])


# A study's quality is its first objective that scores the model; the other objectives count its cost.
QUALITY_METRICS = {"best_val_accuracy": "best validation accuracy", "final_val_accuracy": "final validation accuracy",
                   "final_val_loss": "final validation loss"}
_QUALITY_CURVES: dict[str, tuple[str, Any]] = {
    "best_val_accuracy": ("val_accuracy", max), "final_val_accuracy": ("val_accuracy", lambda c: c[-1]),
    "final_val_loss": ("val_loss", lambda c: c[-1]),
}


def quality_metric(objectives: Sequence[str], *, has_accuracy: bool) -> str:
    """The quality metric of a study with these objectives (cost-only studies: accuracy where there is one)."""
    scored = [o for o in objectives if o in QUALITY_METRICS]
    if scored:
        return scored[0]
    return "best_val_accuracy" if has_accuracy else "final_val_loss"


def higher_is_better(metric: str) -> bool:
    return metric != "final_val_loss"


@dataclass(frozen=True)
class Confirmation:
    """What ``confirm`` stores per re-trained trial: the test metric over fresh seeds."""

    metric: str  # "test_accuracy" | "test_loss"
    values: list[float]
    seeds: list[int]
    train_seconds: list[float]
    epochs: int

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
                "epochs": self.epochs, "mean": self.mean, "sd": self.sd}

    @classmethod
    def from_attr(cls, record: Mapping[str, Any]) -> Confirmation:
        if "metric" not in record:  # written by lrpo_study 0.1 (accuracy only)
            return cls("test_accuracy", record["test_accuracy"], record["seeds"], record["train_seconds"], record["epochs"])
        return cls(record["metric"], record["values"], record["seeds"], record["train_seconds"], record["epochs"])


def confirmations(study_attrs: Mapping[str, Any]) -> dict[int, Confirmation]:
    """Trial number → its confirmation, from a study's user_attrs."""
    return {
        int(key.removeprefix(CONFIRM_PREFIX)): Confirmation.from_attr(value)
        for key, value in study_attrs.items() if key.startswith(CONFIRM_PREFIX)
    }
