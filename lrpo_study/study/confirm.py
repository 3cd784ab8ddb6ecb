"""Re-train chosen trials with fresh seeds and score them on the task's untouched test data.

For each study: its Pareto trials (or its best ``top`` trials) plus its
reference trials (paper / baseline) are trained again with each seed (for a
built-in task the seed also carves a new train/validation split) and the
final model is scored on the task's test data, which no study ever saw:
test accuracy when the study's first objective is an accuracy and the task
has one, else test loss. Results go into
the study's user_attrs as ``confirm:<trial number>``.

Two checks come first, for every study, before anything is imported or trained: the seeds differ from
the study's training seed (else a "confirmation" replays the study's own runs, from the trajectory cache
at that), and code the stored spec names — a task factory or a loop — is imported only when the caller
names the same reference (``trusted``): anyone who can write to a shared storage could otherwise have
every machine that confirms run code of their choice.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from lrpo_study import metrics
from lrpo_study.errors import UserError
from lrpo_study.tasks import BUILTIN_TASKS, load_loop, load_task
from lrpo_study.training.cache import TrajectoryCache
from lrpo_study.training.loop import resolve_device, train
from lrpo_study.views import record
from lrpo_study.views.trial import renote

from .spec import StudySpec
from .trial_run import TrialRun, TrialRunError


@dataclass(frozen=True)
class Confirmed:
    study: str
    method: str
    trial: int
    reference: str | None
    result: record.Confirmation
    cached_epochs: int = 0  # of all its seeds' epochs, those served by the trajectory cache


def chosen_trials(study: optuna.Study, top: int | None, numbers: list[int] | None = None) -> list[FrozenTrial]:
    """``numbers`` exactly, else the ``top`` best on the first objective, else the Pareto trials;
    the reference trials are added to the last two."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if record.is_ours(t)]
    if numbers:
        by_number = {t.number: t for t in complete}
        missing = [n for n in numbers if n not in by_number]
        if missing:
            raise UserError(f"study {study.study_name!r} has no complete trial {missing[0]} of lrpo_study's, got {numbers=}")
        return [by_number[n] for n in sorted(set(numbers))]
    if top is not None:
        sign = -1.0 if _maximizes_first(study) else 1.0
        picked = sorted(complete, key=lambda t: sign * t.values[0])[:top]  # best first on the first objective
    else:
        picked = record.our_best_trials(study)[: None if len(study.directions) > 1 else 1]
    picked += [t for t in complete if t.user_attrs.get(record.REFERENCE) and t not in picked]
    return sorted(picked, key=lambda t: t.number)


def _test_metric(study: optuna.Study, trial: record.TrialRecord) -> str:
    """What confirm scores: the test split's counterpart of the study's quality objective (test_accuracy,
    test_loss, test_f1)."""
    return record.study_quality(study.user_attrs[record.SPEC], has_accuracy=trial.has_accuracy).test_metric


def _maximizes_first(study: optuna.Study) -> bool:
    return study.directions[0] == optuna.study.StudyDirection.MAXIMIZE


def code_named(study: optuna.Study) -> str | None:
    """The ``package.module:function`` the study's stored spec trains with (its loop, else its task
    factory); None for a built-in task."""
    task_name, options = record.stored_task(study.user_attrs[record.SPEC])
    if "loop" in options:
        return str(options["loop"])
    return None if task_name in BUILTIN_TASKS else str(task_name)


def check_confirmable(study: optuna.Study, *, seeds: list[int], trusted: Collection[str] = ()) -> None:
    """A ``UserError`` when ``seeds`` include the study's training seed, or when its stored spec names
    code that is not in ``trusted`` (nothing is imported here)."""
    train_seed = study.user_attrs[record.SPEC].get("train_seed", 42)
    if train_seed in seeds:
        raise UserError(
            f"--seeds {','.join(map(str, seeds))} include study {study.study_name!r}'s training seed {train_seed}: "
            "a confirmation needs seeds its trials never trained with"
        )
    code = code_named(study)
    if code is not None and code not in trusted:
        mismatch = f" (you named {', '.join(map(repr, sorted(trusted)))})" if trusted else ""
        raise UserError(
            f"study {study.study_name!r} trains with {code!r}, code named by the storage{mismatch}; confirm imports "
            f"only code you name: if that is yours, add --task {code!r}"
        )


def confirm_study(
    study: optuna.Study, *, seeds: list[int], top: int | None, device_name: str, data_dir: str | None,
    numbers: list[int] | None = None, cache: TrajectoryCache | None = None, trusted: Collection[str] = (),
) -> list[Confirmed]:
    """Confirm ``study``'s chosen trials (``check_confirmable`` first: ``trusted`` are the code references
    the caller vouches for); a task without test data is a ``UserError``. With ``cache``, runs of one seed
    whose schedules agree up to an epoch share it (the results are the same as without)."""
    check_confirmable(study, seeds=seeds, trusted=trusted)
    task_name, options = record.stored_task(study.user_attrs[record.SPEC])
    chosen = chosen_trials(study, top, numbers)  # a bad trial number fails before any data is loaded
    device = resolve_device(device_name)
    if "loop" in options:
        return _confirm_loop(study, chosen, seeds=seeds, options=options, device=device)
    tasks = {seed: load_task(task_name, options, data_dir=data_dir, seed=seed).to(device) for seed in seeds}
    if any(task.test is None for task in tasks.values()):
        raise UserError(
            f"study {study.study_name!r}: task {task_name!r} ({', '.join(f'{k}={v}' for k, v in options.items())}) "
            "has no test data to confirm on"
        )
    out = []
    for trial in chosen:
        r = record.TrialRecord.of(trial)
        metric = _test_metric(study, r)
        values, seconds, flops, cached = [], [], [], 0
        for seed in seeds:
            result = train(task=tasks[seed], method=r.method, hyperparameters=r.hyperparameters, seed=seed, device=device,
                           progress=sys.stderr.isatty(), score_test=True, cache=cache)
            values.append(float(result.extras[metric]))
            seconds.append(result.train_seconds)
            flops.append(result.value(metrics.TRAIN_FLOPS))
            cached += result.extras["cached_epochs"]
        confirmation = record.Confirmation(metric, values, seeds, seconds, r.epochs, flops)
        study.set_user_attr(f"{record.CONFIRM_PREFIX}{trial.number}", confirmation.to_attr())
        renote(study, trial, confirmation)
        out.append(Confirmed(study.study_name, r.method, trial.number, r.reference, confirmation, cached))
    return out


def confirmation_table(results: list[Confirmed]) -> str:
    lines = [f"{'study':>16} {'method':>10} {'trial':>5} {'ref':>8} {'epochs':>6} {'test metric':>14} {'mean ± sd':>17} "
             f"{'train FLOPs':>11} {'train s':>8}"]
    for c in results:
        r = c.result
        flops = f"{statistics.fmean(r.train_flops):.4g}" if r.train_flops else "-"
        lines.append(
            f"{c.study:>16} {c.method:>10} {c.trial:>5} {c.reference or '':>8} {r.epochs:>6} {r.metric:>14} "
            f"{r.mean:>8.4f} ± {r.sd:.4f} {flops:>11} {statistics.fmean(r.train_seconds):>8.1f}"
        )
    return "\n".join(lines)


def _confirm_loop(
    study: optuna.Study, chosen: list[FrozenTrial], *, seeds: list[int], options: dict[str, Any], device: torch.device,
) -> list[Confirmed]:
    """A study trained by the user's loop: the loop re-runs each trial with each seed and, asked by
    ``run.wants_test``, scores its final model on its own test data (``run.report_test``)."""
    loop_name = options.pop("loop")
    loop = load_loop(loop_name)
    objectives = tuple(study.user_attrs[record.SPEC]["objectives"])
    out = []
    for trial in chosen:
        r = record.TrialRecord.of(trial)
        metric = _test_metric(study, r)
        values, seconds, flops = [], [], []
        for seed in seeds:
            spec = StudySpec(path=f"study {study.study_name!r}", name=study.study_name, method=r.method, task=loop_name,
                             task_options=options, loop=loop_name, fixed=dict(r.hyperparameters), objectives=objectives)
            run = TrialRun(optuna.trial.FixedTrial({}), spec, seed=seed, device=device, test=True)
            try:
                loop(run)
            except TrialRunError as exc:
                raise UserError(f"loop {loop_name!r}: {exc}") from None
            if not run.test_scores:
                raise UserError(f"loop {loop_name!r} gave no test score to confirm on: when run.wants_test, "
                                "score the final model on your test data and call run.report_test(loss=..., accuracy=...)")
            if metric not in run.test_scores:
                raise UserError(f"loop {loop_name!r} reported the test scores {sorted(run.test_scores)}, not {metric}: "
                                f"the study's quality is {metric.replace('test_', 'val_')} (run.report_test(...))")
            values.append(run.test_scores[metric])
            seconds.append(metrics.TRAIN_SECONDS.value(run.curves))
            if metrics.FLOPS in run.curves:
                flops.append(metrics.TRAIN_FLOPS.value(run.curves))
        confirmation = record.Confirmation(metric, values, seeds, seconds, r.epochs, flops)
        study.set_user_attr(f"{record.CONFIRM_PREFIX}{trial.number}", confirmation.to_attr())
        renote(study, trial, confirmation)
        out.append(Confirmed(study.study_name, r.method, trial.number, r.reference, confirmation))
    return out
