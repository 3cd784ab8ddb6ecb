"""Population-based training on an Optuna storage (Jaderberg et al. 2017; Ray Tune's and Syne Tune's PBT).

Each generation of each member is one trial of the study: its param ``lr`` is the generation's lr, its
user_attrs name the member, the generation, the parent trial whose final state it starts from and the
lineage's lr path (``record.PBT_KEYS``). A generation trains the method ``pbt`` (a piecewise-constant lr,
one piece per generation) over the whole lineage through the one loop: the trajectory cache, keyed by
the lr of every step so far, hands it the parent's exact state (model, optimizer, RNG) at the
generation's first epoch, and the schedule sets the new lr before the first step — so an explored lr is
what trains, never the checkpoint's.

Asynchronous like Syne Tune's variant: whoever finishes generation g of a member decides generation g+1
at once, from the generation-g results stored so far, and enqueues it; any worker on the storage pops it
(Optuna hands a waiting trial to one process only). The bottom ``quantile`` of those results copies a
member of the top ``quantile`` (exploit) and explores its lr: resampled from the search space with
``resample_probability``, else multiplied by one of ``factors``, kept within the bounds. Nothing here
prunes: exploit is PBT's selection.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable
from typing import Any, NoReturn

import optuna
from optuna.trial import FrozenTrial, TrialState

from lrpo_study import metrics
from lrpo_study.views import record

from .liveness import retry_attrs
from .spec import SearchParam, StudySpec

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_LIVE = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)


class NotRun(Exception):
    """Optuna made a fresh trial because another worker took the waiting generation first."""


@dataclasses.dataclass(frozen=True)
class Generation:
    """One member's generation, as its trial's user_attrs say. ``lrs`` (the lineage's lr path, this
    generation's last) is empty until the trial starts and decides whether to exploit (``decide``)."""

    member: int
    generation: int
    parent: int | None
    start_epoch: int
    lrs: tuple[float, ...] = ()
    exploited: bool = False

    @classmethod
    def of(cls, attrs: dict[str, Any]) -> Generation | None:
        if record.PBT_MEMBER not in attrs:
            return None
        return cls(attrs[record.PBT_MEMBER], attrs[record.PBT_GENERATION], attrs[record.PBT_PARENT],
                   attrs[record.PBT_START_EPOCH], tuple(attrs.get(record.PBT_LRS, ())), bool(attrs.get(record.PBT_EXPLOITED, False)))

    def attrs(self) -> dict[str, Any]:
        decided = {record.PBT_LRS: list(self.lrs), record.PBT_EXPLOITED: self.exploited} if self.lrs else {}
        return {record.PBT_MEMBER: self.member, record.PBT_GENERATION: self.generation, record.PBT_PARENT: self.parent,
                record.PBT_START_EPOCH: self.start_epoch, **decided}


class LineageSampler(optuna.samplers.BaseSampler):
    """A PBT study's sampler: a generation's ``lr`` is the last of its lineage's lrs (``decide`` wrote them
    into the trial's user_attrs before the objective suggests), so the trial's param is the lr it trains."""

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any) -> Any:
        generation = Generation.of(trial.user_attrs)
        if param_name != "lr" or generation is None or not generation.lrs:
            raise RuntimeError(f"trial {trial.number} of a pbt study suggested {param_name!r} before its lineage was decided")
        return generation.lrs[-1]


def _lr_param(spec: StudySpec) -> SearchParam:
    return next(p for p in spec.search if p.name == "lr")


def _sample_lr(spec: StudySpec, rng: random.Random) -> float:
    p = _lr_param(spec)
    assert p.low is not None and p.high is not None  # the spec's parser checked them
    if p.log:
        return math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
    return rng.uniform(p.low, p.high)


def explore(lr: float, spec: StudySpec, rng: random.Random) -> float:
    """Ray's explore for one float: resample with ``resample_probability``, else scale by a factor; in bounds."""
    assert spec.pbt is not None
    if rng.random() < spec.pbt.resample_probability:
        return _sample_lr(spec, rng)
    p = _lr_param(spec)
    assert p.low is not None and p.high is not None
    return min(max(lr * rng.choice(spec.pbt.factors), p.low), p.high)


def _rng(spec: StudySpec, member: int, generation: int) -> random.Random:
    """Each decision its own seeded stream: the same results decide the same way in any process."""
    return random.Random(f"{spec.seed}:{member}:{generation}")


def seed_population(study: optuna.Study, spec: StudySpec) -> None:
    """Enqueue generation 0 of every member, its lr drawn from the search space (seeded)."""
    assert spec.pbt is not None
    for member in range(spec.pbt.population):
        lr = _sample_lr(spec, _rng(spec, member, 0))
        study.enqueue_trial({}, user_attrs=Generation(member, 0, None, 0, (lr,)).attrs())


def lineage_spec(spec: StudySpec, generation: Generation) -> StudySpec:
    """The spec a generation trains under: its lineage's lr path fixed, its epochs the lineage's so far."""
    assert spec.pbt is not None
    interval = spec.pbt.interval
    fixed = {**spec.fixed, "lrs": list(generation.lrs), "piece_epochs": interval,
             "epochs": (generation.generation + 1) * interval}
    return dataclasses.replace(spec, fixed=fixed)


def score(trial: FrozenTrial | optuna.Trial, spec: StudySpec) -> float:
    """A generation's result, higher is better: the study's quality metric's curve at the generation's end
    (the latest value, as Ray's PBT ranks); a diverged generation is the worst."""
    curves = trial.user_attrs.get(record.CURVES, {})
    quality = spec.quality(has_accuracy=bool(curves.get(metrics.VAL_ACCURACY)))
    value = float((curves.get(quality.curve) or [math.nan])[-1])
    if not math.isfinite(value):
        return -math.inf
    return value if quality.higher_is_better else -value


def _by_generation(study: optuna.Study, states: tuple[TrialState, ...]) -> dict[tuple[int, int], list[FrozenTrial]]:
    found: dict[tuple[int, int], list[FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False, states=states):
        g = Generation.of(t.user_attrs)
        if g is not None:
            found.setdefault((g.member, g.generation), []).append(t)
    return found


def plan_next(study: optuna.Study, spec: StudySpec, number: int, done: Generation) -> None:
    """Enqueue the member's next generation after trial ``number`` finished ``done``; it decides how it
    goes on (``decide``) when it starts, from every result of this generation stored by then."""
    assert spec.pbt is not None
    following = done.generation + 1
    if following >= spec.generations or (done.member, following) in _by_generation(study, _LIVE):
        return  # the last generation, or already planned (a retried trial's first run got that far)
    study.enqueue_trial({}, user_attrs=Generation(done.member, following, number, following * spec.pbt.interval).attrs())


def decide(study: optuna.Study, spec: StudySpec, planned: Generation) -> Generation:
    """Exploit and explore at a generation's start: if the member's previous generation is in the bottom
    quantile of that generation's results stored so far, copy a top-quantile member (its state and lr
    path) and explore the lr; else go on with its own lineage and lr unchanged."""
    if planned.lrs:  # generation 0, or decided before: a retried trial trains what its first run was going to
        return planned
    assert spec.pbt is not None and planned.parent is not None
    previous = planned.generation - 1
    finished = _by_generation(study, FINISHED)
    peers = {member: trials[-1] for (member, generation), trials in finished.items() if generation == previous}
    own = study.get_trials(deepcopy=False)[planned.parent] if planned.member not in peers else peers[planned.member]
    peers[planned.member] = own
    scores = {member: score(t, spec) for member, t in peers.items()}
    ranked = sorted(scores, key=lambda m: (scores[m], -m))  # worst first; ties: the higher member number is worse
    k = min(math.ceil(len(ranked) * spec.pbt.quantile), len(ranked) // 2)
    rng = _rng(spec, planned.member, planned.generation)
    source, exploited = own, False
    if k and planned.member in ranked[:k]:
        source, exploited = peers[rng.choice(ranked[-k:])], True
    lineage = Generation.of(source.user_attrs)
    assert lineage is not None and lineage.lrs
    lr = explore(lineage.lrs[-1], spec, rng) if exploited else lineage.lrs[-1]
    return dataclasses.replace(planned, parent=source.number, lrs=(*lineage.lrs, lr), exploited=exploited)


def repair(study: optuna.Study, spec: StudySpec) -> list[str]:
    """Before workers start on a resumed study: re-enqueue every generation whose trials all failed
    (Ctrl-C, a crash) and plan any next generation a worker died before enqueuing. Runs in one process."""
    assert spec.pbt is not None
    live = _by_generation(study, _LIVE)
    failed = _by_generation(study, (TrialState.FAIL,))
    finished = _by_generation(study, FINISHED)
    done = []
    for member in range(spec.pbt.population):
        for generation in range(spec.generations):
            if (member, generation) in live:
                continue
            if (member, generation) in failed:
                t = failed[(member, generation)][-1]
                study.enqueue_trial({}, user_attrs=retry_attrs(t))
                done.append(f"member {member} generation {generation} (trial {t.number} failed)")
            elif generation and (member, generation - 1) in finished:
                t = finished[(member, generation - 1)][-1]
                g = Generation.of(t.user_attrs)
                assert g is not None
                plan_next(study, spec, t.number, g)
                done.append(f"member {member} generation {generation} (never planned)")
            break  # a later generation waits for this one
    return done


def remaining(study: optuna.Study, spec: StudySpec) -> int:
    """Generations not finished yet."""
    return spec.n_trials - len(_by_generation(study, FINISHED))


class PBTObjective:
    """The objective of a PBT study's worker: trains the generation the trial was enqueued as, then plans
    that member's next one. ``train(trial, spec)`` trains a trial under a spec (``Objective.run``)."""

    def __init__(self, spec: StudySpec, train: Callable[[optuna.Trial, StudySpec], float | tuple[float, ...]]) -> None:
        self.spec, self.train = spec, train

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        planned = Generation.of(trial.user_attrs)
        if planned is None:
            _not_run(trial, "another worker took the waiting generation")
        planned = _ready(trial, self.spec, planned)
        generation = decide(trial.study, self.spec, planned)
        for key, value in generation.attrs().items():
            trial.set_user_attr(key, value)
        try:
            values = self.train(trial, lineage_spec(self.spec, generation))
        except optuna.TrialPruned:  # diverged: finished, its score the worst (the member exploits another next time)
            plan_next(trial.study, self.spec, trial.number, generation)
            raise
        # Planned before Optuna marks this trial COMPLETE: if that write never happens (Ctrl-C just now), the
        # successor finds no finished parent when it starts (``_ready``) and waits for this generation's retry.
        plan_next(trial.study, self.spec, trial.number, generation)
        return values


def _not_run(trial: optuna.Trial, reason: str) -> NoReturn:
    trial.set_user_attr(record.PRUNED_REASON, f"not run: {reason}")
    raise NotRun


def _ready(trial: optuna.Trial, spec: StudySpec, planned: Generation) -> Generation:
    """``planned`` if this trial is the one to train its (member, generation) now, its parent a finished trial
    of the previous generation; else ``NotRun`` (the trial fails with the reason, and trains nothing).

    Whatever the timing between processes and machines, one trial trains each (member, generation): of the
    live trials enqueued for it (two processes seeding one population, or both re-queuing a failed
    generation on resume), the lowest-numbered one. A generation starts only after its member's previous
    generation finished: a successor planned by a run that then failed waits for that generation's retry,
    which plans it again."""
    study = trial.study
    key = (planned.member, planned.generation)
    same = [t for t in _by_generation(study, _LIVE).get(key, []) if t.number != trial.number]
    done = [t.number for t in same if t.state in FINISHED]
    if done:
        _not_run(trial, f"trial {done[0]} already trained member {key[0]} generation {key[1]}")
    earlier = [t.number for t in same if t.number < trial.number]
    if earlier:
        _not_run(trial, f"trial {earlier[0]} trains member {key[0]} generation {key[1]}")
    if planned.generation == 0 or planned.lrs:  # generation 0, or decided by its first run (from a finished parent)
        return planned
    previous = _by_generation(study, FINISHED).get((planned.member, planned.generation - 1))
    if not previous:
        if (planned.member, planned.generation - 1) not in _by_generation(study, _LIVE):
            failed = _by_generation(study, (TrialState.FAIL,)).get((planned.member, planned.generation - 1), [])
            real = [t for t in failed if not str(t.user_attrs.get(record.PRUNED_REASON, "")).startswith("not run")]
            if real:  # nobody retries it yet: queue it (a duplicate from another process is not run, above)
                study.enqueue_trial({}, user_attrs=retry_attrs(real[-1]))
        _not_run(trial, f"member {planned.member}'s generation {planned.generation - 1} has not finished "
                        "(it was interrupted); it plans this generation again when it does")
    return dataclasses.replace(planned, parent=previous[-1].number)


def optimize(
    study: optuna.Study, objective: PBTObjective, *, poll: float = 0.5,
    guard: Callable[[Callable[[optuna.Trial], Any]], Callable[[optuna.Trial], Any]] = lambda f: f,
    catch: tuple[type[Exception], ...] = (), callbacks: tuple[Callable[[optuna.Study, FrozenTrial], None], ...] = (),
) -> None:
    """Pop and train waiting generations until the population is done; wait while others train the
    generations the rest depend on. Returns early when nothing waits or runs (a failed trial: ``repair``).
    ``guard`` wraps the objective, ``catch`` and ``callbacks`` go to ``study.optimize``."""
    while remaining(study, objective.spec) > 0:
        states = [t.state for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))]
        if TrialState.WAITING in states:
            study.optimize(guard(objective), n_trials=1, gc_after_trial=False, catch=(NotRun, *catch),
                           callbacks=list(callbacks))
        elif TrialState.RUNNING in states:
            time.sleep(poll)
        else:
            return
