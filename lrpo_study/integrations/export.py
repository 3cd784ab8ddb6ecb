"""Best / Pareto trials of a study → settings JSON (see ``lrpo_study.integrations.settings`` for the format)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from lrpo_study import metrics
from lrpo_study.errors import UserError
from lrpo_study.study.storage import mask_url
from lrpo_study.views import record

from .export_hf import training_arguments
from .settings import SCHEMA_VERSION, validate_settings


def trial_settings(study: optuna.Study, trial: FrozenTrial, storage_url: str) -> dict[str, Any]:
    r = record.TrialRecord.of(trial)
    names = study.metric_names or [f"value{i}" for i in range(len(trial.values))]
    settings = {
        "method": r.method,
        "hyperparameters": r.hyperparameters,
        "objectives": dict(zip(names, trial.values, strict=True)),
        "provenance": {
            "study": study.study_name, "trial": trial.number, "storage": mask_url(storage_url),
            "lrpo_study_version": r.attrs[record.VERSION], "torch_version": r.attrs[record.TORCH_VERSION],
            "task": r.task, "task_options": r.task_options, "seed": r.seed,
            "reference": r.reference, "alpha_used": r.attrs.get(record.ALPHA),
        },
    }
    validate_settings(settings, where=f"trial {trial.number}")
    return settings


# Short names --best takes besides an objective's own (best_val_accuracy, train_flops, final_val_f1).
BEST_ALIASES = {"accuracy": metrics.BEST_VAL_ACCURACY.name, "loss": metrics.FINAL_VAL_LOSS.name,
                "seconds": metrics.TRAIN_SECONDS.name, "flops": metrics.TRAIN_FLOPS.name}


def best_objective(study: optuna.Study, best: str) -> metrics.Objective:
    """What ``--best`` names: one of the study's objectives by name (its direction as the study has it), an
    alias, or any other objective the trials record (``max:final_val_f1`` for a metric of the user's)."""
    name = BEST_ALIASES.get(best, best)
    spec = study.user_attrs.get(record.SPEC, {})
    for objective in (metrics.parse_objective(o) for o in spec.get("objectives", ())):
        if name in (objective.name, objective.spelling):
            return objective
    try:
        return metrics.parse_objective(name)
    except ValueError as exc:
        raise UserError(f"--best {best}: {exc}; the study's objectives: {', '.join(spec.get('objectives', ()))}") from None


def select_trials(study: optuna.Study, *, trial: int | None, pareto: bool, best: str | None) -> list[FrozenTrial]:
    every = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    complete = record.final_generation([t for t in every if record.is_ours(t)])  # a population: its final members
    if trial is not None:
        found = [t for t in every if t.number == trial]
        if not found:
            raise UserError(f"study {study.study_name!r} has no complete trial number {trial}")
        if not record.is_ours(found[0]):
            raise UserError(f"trial {trial} of study {study.study_name!r} was not made by lrpo_study: it has no settings to export")
        return found
    if not complete:
        others = f" ({len(every)} complete trials not made by lrpo_study)" if every else ""
        raise UserError(f"study {study.study_name!r} has no complete lrpo_study trials to export{others}")
    if pareto:
        return record.our_best_trials(study)
    names = study.metric_names or []
    if best is None:
        if len(study.directions) > 1:
            raise UserError(f"a multi-objective study needs --trial N, --pareto or --best OBJECTIVE ({', '.join(names)})")
        return record.our_best_trials(study)[:1]
    objective = best_objective(study, best)
    source = record.our_best_trials(study) if len(study.directions) > 1 else complete
    values = [(v, t) for t in source if (v := record.TrialRecord.of(t).value(objective)) == v]  # NaN: not recorded
    if not values:
        raise UserError(f"study {study.study_name!r} records no {objective.curve} for --best {best}; "
                        f"its objectives: {', '.join(names)}")
    pick = max if objective.higher_is_better else min
    return [pick(values, key=lambda vt: vt[0])[1]]


def export(
    study: optuna.Study, storage_url: str, output: Path, *, trial: int | None = None, pareto: bool = False,
    best: str | None = None, target: str = "lrpo_study",
) -> int:
    chosen = select_trials(study, trial=trial, pareto=pareto, best=best)
    settings = [trial_settings(study, t, storage_url) for t in chosen]
    payload: dict[str, Any]
    if target == "transformers":
        if pareto and len(settings) > 1:
            raise UserError("--for transformers writes one trial's arguments: pick it with --trial N or --best")
        try:
            payload = training_arguments(settings[0], steps_per_epoch=chosen[0].user_attrs.get(record.STEPS_PER_EPOCH))
        except ValueError as exc:
            raise UserError(f"cannot export trial {chosen[0].number} for transformers: {exc}") from None
    elif pareto:
        payload = {"schema_version": SCHEMA_VERSION, "trials": settings}
    else:
        payload = {"schema_version": SCHEMA_VERSION, **settings[0]}
    try:
        output.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {str(output)!r}: {exc.strerror}") from None
    return len(settings)
