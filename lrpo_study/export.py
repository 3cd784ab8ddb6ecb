"""Best / Pareto trials of a study → settings JSON (see ``lrpo_study.settings`` for the format)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from .errors import UserError
from .settings import SCHEMA_VERSION, validate_settings
from .storage import mask_url


def trial_settings(study: optuna.Study, trial: FrozenTrial, storage_url: str) -> dict[str, Any]:
    attrs = trial.user_attrs
    names = study.metric_names or [f"value{i}" for i in range(len(trial.values))]
    settings = {
        "method": attrs["method"],
        "hyperparameters": attrs["hyperparameters"],
        "objectives": dict(zip(names, trial.values, strict=True)),
        "provenance": {
            "study": study.study_name, "trial": trial.number, "storage": mask_url(storage_url),
            "lrpo_study_version": attrs["lrpo_study_version"], "torch_version": attrs["torch_version"],
            "model": attrs["model"], "split": attrs["split"], "seed": attrs["seed"],
            "reference": attrs.get("reference"), "alpha_used": attrs.get("alpha"),
        },
    }
    validate_settings(settings, where=f"trial {trial.number}")
    return settings


def select_trials(study: optuna.Study, *, trial: int | None, pareto: bool, best: str | None) -> list[FrozenTrial]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise UserError(f"study {study.study_name!r} has no complete trials to export")
    if trial is not None:
        found = [t for t in complete if t.number == trial]
        if not found:
            raise UserError(f"study {study.study_name!r} has no complete trial number {trial}")
        return found
    if pareto:
        return sorted(study.best_trials, key=lambda t: t.number)
    names = study.metric_names or []
    if best is None:
        if len(study.directions) > 1:
            raise UserError("a multi-objective study needs --trial N, --pareto or --best accuracy|seconds")
        return [study.best_trial]
    wanted = "best_val_accuracy" if best == "accuracy" else "train_seconds"
    source = study.best_trials if len(study.directions) > 1 else complete
    if wanted in names:
        i = names.index(wanted)
        values = [(t.values[i], t) for t in source]
    else:
        values = [(t.user_attrs[wanted], t) for t in source]
    pick = max if best == "accuracy" else min
    return [pick(values, key=lambda vt: vt[0])[1]]


def export(
    study: optuna.Study, storage_url: str, output: Path, *, trial: int | None = None, pareto: bool = False,
    best: str | None = None,
) -> int:
    chosen = select_trials(study, trial=trial, pareto=pareto, best=best)
    settings = [trial_settings(study, t, storage_url) for t in chosen]
    payload = {"schema_version": SCHEMA_VERSION, "trials": settings} if pareto else {"schema_version": SCHEMA_VERSION, **settings[0]}
    try:
        output.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {str(output)!r}: {exc.strerror}") from None
    return len(settings)
