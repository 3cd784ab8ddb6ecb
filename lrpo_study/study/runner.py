"""Run study specs against a storage: create or resume, enqueue references, fan out workers."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from lrpo_study import interrupts
from lrpo_study.errors import UserError
from lrpo_study.tasks import BUILTIN_TASKS, Task, load_loop, load_task
from lrpo_study.training.cache import TrajectoryCache, served_line
from lrpo_study.training.checkpoints import CheckpointStore, beside_storage, server_artifacts
from lrpo_study.training.loop import resolve_device
from lrpo_study.views import record

from . import pbt
from .failures import FailsAlone, TrialFailedAlone, stop_after_failures
from .liveness import fail_dead_local_trials
from .objective import REFERENCES, LoopObjective, Objective, reference_params
from .pruning import optuna_pruner
from .spec import StudySpec, check_corners, check_objectives, constant_cost
from .storage import is_rdb, mask_url, open_storage
from .workers import run_workers

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
DEFAULT_STORAGE = "sqlite:///lrpo_study.db"


@dataclass(frozen=True)
class RunOptions:
    storage: str
    heartbeat: int = 20
    storage_timeout: float = 120.0
    n_trials: int | None = None
    workers: int = 1
    sampler: str | None = None
    seed: int | None = None
    device: str = "auto"
    worker_devices: tuple[str, ...] = ()  # worker i trains on worker_devices[i] (devices.worker_devices); empty: device
    data_dir: str | None = None
    progress: bool = True
    checkpoint_dir: str | None = None
    cache_dir: str | None = None
    cache_max_bytes: int = 2 * 1024**3
    artifact_dir: str | None = None
    max_failures: int = 3  # trials that fail alone (an exception in the loop, a timeout) before the study stops; 0: never
    trial_timeout: float | None = None  # seconds a trial may run before it fails

    def open_storage(self, *, wait_for_server: bool = False) -> optuna.storages.BaseStorage:
        return open_storage(
            self.storage, heartbeat_interval=self.heartbeat, grace_period=3 * self.heartbeat, retry_seconds=self.storage_timeout,
            wait_for_server=wait_for_server,
        )


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """Each trial is sampled by a fresh sampler seeded with (seed, trial number).

    Trial numbers are unique in a storage, so processes sharing one study draw
    from different streams instead of proposing the same parameters, and one
    process on its own stays reproducible. The samplers we use keep no state
    between trials beyond their RNG (they read the history from the storage).
    """

    def __init__(self, factory: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._factory, self._seed = factory, seed
        self._current = factory(seed)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self._current = self._factory((self._seed * 1_000_003 + trial.number) % 2**32)
        self._current.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        with _chosen_features():
            return self._current.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        with _chosen_features():
            return self._current.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str, param_distribution: Any,
    ) -> Any:
        return self._current.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: TrialState, values: Sequence[float] | None,
    ) -> None:
        self._current.after_trial(study, trial, state, values)


@contextlib.contextmanager
def _chosen_features() -> Iterator[None]:
    """TPE's ``group`` (experimental since Optuna 2.8) is chosen on purpose: no warning per study."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def make_sampler(name: str, seed: int, *, parallel: bool) -> optuna.samplers.BaseSampler:
    return TrialSeededSampler(lambda s: _sampler(name, s, parallel=parallel), seed)


def _sampler(name: str, seed: int, *, parallel: bool) -> optuna.samplers.BaseSampler:
    with _chosen_features():
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=parallel)
        if name == "nsgaii":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        try:
            import scipy  # noqa: F401, PLC0415
        except ImportError:
            raise UserError("sampler 'gp' needs scipy: pip install scipy") from None
        return optuna.samplers.GPSampler(seed=seed)


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


class _OverTotal(Exception):
    """This trial is not run: the study reached its total in another process, or another trial is that reference."""


def _within_total(study: optuna.Study, objective: Callable[[optuna.Trial], Any], target: int) -> Callable[[optuna.Trial], Any]:
    """The objective, run only while the storage holds fewer than ``target`` finished or running
    trials numbered before this one; then every process stops (``MaxTrialsCallback`` also counts
    the storage, but only after a trial, so two processes could both start one more)."""

    def guarded(trial: optuna.Trial) -> Any:
        ahead = [t for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)) if t.number < trial.number]
        if len(ahead) >= target:
            study.stop()
            trial.set_user_attr(record.PRUNED_REASON, f"not run: the study had reached its total of {target} trials")
            raise _OverTotal
        tag = trial.user_attrs.get(record.REFERENCE)
        if tag is not None and not trial.user_attrs.get(record.RETRIED_FROM):
            # Two processes creating one study may both enqueue its references: the lowest-numbered one runs.
            twins = [t.number for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING, TrialState.WAITING))
                     if t.user_attrs.get(record.REFERENCE) == tag and t.number < trial.number
                     and not t.user_attrs.get(record.RETRIED_FROM)]
            if twins:
                trial.set_user_attr(record.PRUNED_REASON, f"not run: trial {twins[0]} is the {tag} reference")
                raise _OverTotal
        return objective(trial)

    return guarded


def create_study(spec: StudySpec, *, storage: str | optuna.storages.BaseStorage) -> optuna.Study:
    """An Optuna study made from ``spec`` for your own objective (``TrialRun`` trains its trials): the spec
    is stored, so resume checks, ``report``, ``export`` and ``confirm`` treat it as a study of ours, the
    references that fit are enqueued, and the study has the spec's sampler (seeded) and early-stopping rule.
    The spec names the loop (``[task] loop``): ``confirm`` re-runs it with fresh seeds."""
    if spec.loop is None:
        raise ValueError(f"{spec.path}: a study trained by your own objective names its loop, [task] loop = "
                         "'package.module:function' (confirm re-runs it), got none")
    opened = open_storage(storage) if isinstance(storage, str) else storage
    prepare_study(spec, opened)
    return optuna.load_study(
        study_name=spec.name, storage=opened,
        sampler=make_sampler(spec.sampler, spec.seed, parallel=False),
        pruner=optuna_pruner(spec.pruning) if len(spec.objectives) == 1 else None,
    )


def check_existing(spec: StudySpec, storage: optuna.storages.BaseStorage) -> optuna.Study | None:
    """The stored study of ``spec``'s name (None when there is none), refused in one line when it is
    another kind of study; nothing is written."""
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        return None
    _check_same_kind(spec, study)
    return study


def _check_same_kind(spec: StudySpec, study: optuna.Study) -> None:
    if [d.name.lower() for d in study.directions] != spec.directions:
        raise UserError(f"{spec.path}: study {spec.name!r} already exists with other objectives; rename it")
    stored = study.user_attrs.get(record.SPEC)
    if stored is None:
        return
    if stored["method"] != spec.method:
        raise UserError(f"{spec.path}: study {spec.name!r} already exists for method {stored['method']!r}")
    changed = spec_changes(stored, spec.to_dict())
    if changed:
        raise UserError(
            f"{spec.path}: study {spec.name!r} in this storage was made from a different study file "
            f"({'; '.join(changed[:3])}{'; ...' if len(changed) > 3 else ''}): its trials would be mixed with "
            "these; give the study a new [study] name, or use another --storage"
        )


def prepare_study(spec: StudySpec, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create the study (or load it, checking first that it is the same kind: a refused file writes
    nothing) and enqueue reference trials once."""
    study = check_existing(spec, storage) or optuna.create_study(
        study_name=spec.name, storage=storage, directions=spec.directions, load_if_exists=True,
    )
    _check_same_kind(spec, study)  # another process may have created it meanwhile
    stored = study.user_attrs.get(record.SPEC)
    if stored is None:
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2; the dashboard needs the names
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(spec.objectives))
        study.set_user_attr(record.SPEC, spec.to_dict())
        for tag in REFERENCES:
            params = reference_params(spec, tag)
            if params is not None:
                study.enqueue_trial(params, user_attrs={"reference": tag}, skip_if_exists=True)
        if spec.pbt is not None:
            pbt.seed_population(study, spec)
    return study


# What a stored trial's values mean. Changing the sampler, its seed, pruning or n_trials on resume is fine.
_MEANING = ("method", "task", "objectives", "train_seed", "fixed", "search", "pbt")


def spec_changes(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: old → new`` for every meaningful difference between a stored spec and the file's."""
    name, options = record.stored_task(stored)
    old_task = {"name": name, **options}
    old = {**{k: stored.get(k) for k in _MEANING}, "task": old_task}
    new = {k: current.get(k) for k in _MEANING}
    builtin = BUILTIN_TASKS.get(name)
    if builtin is not None and isinstance(new["task"], dict):  # an option added since, at its default, changes nothing
        new["task"] = {k: v for k, v in new["task"].items()
                       if k in old_task or k not in builtin.options or v != builtin.options[k].default}
    changes: list[str] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                walk(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
        elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{where}[{i}]")
        elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
            changes.append(f"{where}: {a!r} → {b!r}")

    walk(old, new, "")
    return changes


def spec_task(spec: StudySpec, options: RunOptions) -> Task | None:
    """The study's task, built and checked against its objectives (before any study is created); None for a
    study whose own loop trains (its function is imported here, so a bad reference fails before any write)."""
    if spec.loop is not None:
        load_loop(spec.loop)
        return None
    task = load_task(spec.task, spec.task_options, data_dir=options.data_dir, seed=spec.train_seed)
    check_objectives(spec, curves=task.curves(), by=f"task {spec.task!r}")
    check_corners(spec, defaults=task.defaults)
    return task


def quiet_optuna_logs() -> None:
    """Optuna's warnings, less two that our one-line reports replace (in the CLI's process and in each worker)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Ctrl-C and bad input (a loop misusing its TrialRun) are reported in one line; Optuna would also log
    # the trial it failed, with a traceback, and then that it failed "with value None".
    logging.getLogger("optuna.study._optimize").addFilter(_not_reported_elsewhere)  # adding one twice keeps one
    # When a database server goes away mid-query, Optuna logs a guess (too many IN variables) and retries
    # the query; the retrying storage and the CLI's storage failure report the real cause in one line.
    logging.getLogger("optuna.storages._rdb.storage").addFilter(_not_a_sqlalchemy_guess)


def _not_reported_elsewhere(record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    # "not run" (the reason recorded) and a trial that failed alone (said in one line) need no traceback
    if isinstance(error, (KeyboardInterrupt, UserError, _OverTotal, pbt.NotRun, TrialFailedAlone)):
        return False
    message = record.getMessage()
    return not (interrupts.requested() and "failed" in message) and not message.endswith("failed with value None.")


def _not_a_sqlalchemy_guess(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Caught an error from sqlalchemy")



def _work(spec: StudySpec, options: RunOptions, n_trials: int, target: int, task: Task | None = None, worker: int = 0) -> None:
    """Worker number ``worker``: its own device, storage connection, task data and seeded sampler; it trains
    its share of ``n_trials`` (and one more for each trial that failed alone) while the storage holds fewer
    than ``target`` finished or running trials."""
    if options.workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // options.workers))
    quiet_optuna_logs()
    device = torch.device(options.worker_devices[worker]) if options.worker_devices else resolve_device(options.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # synchronize() and friends act on this GPU, not on cuda:0
    task = task or spec_task(spec, options)
    seed = spec.seed if options.seed is None else options.seed
    study = optuna.load_study(
        study_name=spec.name, storage=options.open_storage(wait_for_server=options.workers > 1),  # its parent reached it
        sampler=pbt.LineageSampler() if spec.pbt else make_sampler(options.sampler or spec.sampler, seed, parallel=options.workers > 1),
        pruner=optuna_pruner(spec.pruning) if len(spec.objectives) == 1 else None,
    )
    fail_dead_local_trials(study)
    objective: Objective | LoopObjective
    if task is None:
        assert spec.loop is not None  # spec_task returns no task for a loop's study only
        objective = LoopObjective(spec, load_loop(spec.loop), device, artifact_dir=options.artifact_dir)
    else:
        checkpoints = CheckpointStore(options.checkpoint_dir) if options.checkpoint_dir else None
        cache = TrajectoryCache(options.cache_dir, max_bytes=options.cache_max_bytes) if options.cache_dir else None
        objective = Objective(spec, task.to(device), device, checkpoints=checkpoints, cache=cache,
                              artifact_dir=options.artifact_dir)
    failures = stop_after_failures(study, options.max_failures)
    if spec.pbt is not None:
        assert isinstance(objective, Objective)  # a pbt study trains its task (the spec's parser checked)
        pbt.optimize(study, pbt.PBTObjective(spec, objective.run), catch=(TrialFailedAlone,), callbacks=(failures,),
                     guard=lambda f: FailsAlone(f, passes=(pbt.NotRun,), timeout=options.trial_timeout))
        return
    guarded = FailsAlone(objective, timeout=options.trial_timeout)
    while n_trials > 0:
        failed_before = guarded.failures
        study.optimize(
            _within_total(study, guarded, target), n_trials=n_trials, gc_after_trial=False,
            catch=(_OverTotal, TrialFailedAlone), callbacks=[_stop_at(target), failures],
        )
        if count_finished(study) + len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))) >= target:
            return
        n_trials = guarded.failures - failed_before  # a trial that failed alone is not one of the study's total


def _stop_at(target: int) -> Callable[[optuna.Study, FrozenTrial], None]:
    """Stop this process once the storage holds ``target`` finished or running trials; a trial whose worker
    stopped beating counts as what it is (failed, and re-queued) rather than as one that will finish."""
    counting = MaxTrialsCallback(target, states=(*FINISHED, TrialState.RUNNING))

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        with _chosen_features():  # fail_stale_trials is "experimental"; Optuna calls it itself at each trial start
            optuna.storages.fail_stale_trials(study)
        counting(study, trial)

    return callback


class _Monitor:
    """Progress over finished trials, polled from the storage (works for any worker count).

    On a terminal, a bar; in a log (stderr not a terminal: CI, nohup, a job scheduler), one plain
    line each time a trial finishes instead of a bar redrawn every second.
    """

    def __init__(self, spec: StudySpec, storage_url: str, start: int, target: int, enabled: bool) -> None:
        self.spec, self.url, self.enabled, self.target = spec, storage_url, enabled, target
        self.live = sys.stderr.isatty()
        self.bar = tqdm(total=target, initial=start, desc=spec.name, unit="trial", disable=not (enabled and self.live))
        self.done = start
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> _Monitor:
        if self.enabled:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.enabled:
            self.thread.join()
        self.bar.close()

    def _poll(self) -> None:
        try:
            study = optuna.load_study(study_name=self.spec.name, storage=open_storage(self.url))
            while True:
                self.refresh(study)
                if self.stop.wait(1.0):
                    self.refresh(study)
                    return
        except Exception:  # noqa: BLE001  (a storage gone for good: the workers report it; the bar just stops)
            return

    def refresh(self, study: optuna.Study) -> None:
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state in FINISHED for t in trials)
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        postfix: dict[str, object] = {"pruned": pruned}
        if len(study.directions) > 1:
            postfix["pareto"] = len(study.best_trials) if complete else 0
        elif complete:
            postfix["best"] = f"{study.best_value:.4f}"
        if self.live:
            self.bar.n = done
            self.bar.set_postfix(postfix, refresh=True)
        elif done != self.done:
            details = ", ".join(f"{k} {v}" for k, v in postfix.items())
            print(f"{self.spec.name}: {done}/{self.target} trials finished ({details})", file=sys.stderr, flush=True)
        self.done = done


def run_study(spec: StudySpec, options: RunOptions) -> optuna.Study:
    task = check_study(spec, options)
    with interrupts.as_exception():  # from the first write on, Ctrl-C fails the running trial and closes the storage
        return _run_study(spec, options, task)


def check_study(spec: StudySpec, options: RunOptions) -> Task | None:
    """The refusals of ``spec`` under ``options`` that need no storage (``check_existing`` is the one that
    does), before anything is written; returns its task (None for a loop's study)."""
    if options.workers > 1 and not options.storage.startswith(("journal:", "postgresql", "mysql")):
        raise UserError(
            f"--workers {options.workers} needs a storage several processes can share: "
            f"journal:PATH or postgresql+psycopg://..., not {mask_url(options.storage)}"
        )
    if spec.pbt is not None:
        if options.n_trials is not None:
            raise UserError(f"--n-trials does not apply to pbt study {spec.name!r}: it runs population × generations = "
                            f"{spec.n_trials} trials")
        if options.cache_dir is None:
            raise UserError(f"pbt study {spec.name!r} needs the trajectory cache (members start from each other's states): "
                            "drop --no-cache, or give --cache-dir (a folder every worker shares) for a server storage")
    target = options.n_trials or spec.n_trials
    if not spec.search and spec.pbt is None and target > 1:
        raise UserError(f"{spec.path}: [search] is empty, so all {target} trials would be the same run; "
                        "search at least one hyperparameter (or train it once with: python -m lrpo_study run)")
    _import_lazy_modules()  # before the task is built: building it runs the user's code (build_model, once)
    return spec_task(spec, options)


def _import_lazy_modules() -> None:
    """Modules torch imports on first use (``torch._dynamo`` at an optimizer's first param group, NumPy
    from C code that swallows errors): imported now, while a Ctrl-C still ends the process at once."""
    import numpy  # noqa: F401, PLC0415
    import torch._dynamo  # noqa: F401, PLC0415


def _run_study(spec: StudySpec, options: RunOptions, task: Task | None) -> optuna.Study:
    storage = options.open_storage()
    study = prepare_study(spec, storage)
    target = options.n_trials or spec.n_trials
    fail_dead_local_trials(study)
    if spec.pbt is not None:
        for repaired in pbt.repair(study, spec):
            print(f"{spec.name}: re-queued {repaired}", file=sys.stderr)
    done = count_finished(study)
    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    if done + running >= target:
        busy = f" and {running} running elsewhere" if running else ""
        print(f"{spec.name}: {done} finished trials already{busy} (target {target}); nothing to run")
        return study
    with _Monitor(spec, options.storage, done, target, options.progress):
        if options.workers == 1:
            _work(spec, options, target - done, target, task)
            missing = _missing_after_stalled(study, options, target)
            if missing:
                _work(spec, options, missing, target, task)
        else:
            _parallel_rounds(spec, options, study, target)
    return study


def _missing_after_stalled(study: optuna.Study, options: RunOptions, target: int) -> int:
    """Trials still to run once the RUNNING ones that held this process back are known to be alive: one whose
    worker stopped beating (alive but stalled) counts as running until the heartbeat's grace has passed, then
    it is failed and re-queued. Waits at most that long, and only on a storage with a heartbeat."""
    if not is_rdb(options.storage):
        return 0
    deadline = time.monotonic() + 4 * options.heartbeat
    while count_finished(study) < target and time.monotonic() < deadline:
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            break
        with _chosen_features():
            optuna.storages.fail_stale_trials(study)
        time.sleep(min(1.0, options.heartbeat))
    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return max(0, target - count_finished(study) - running)


def _parallel_rounds(spec: StudySpec, options: RunOptions, study: optuna.Study, target: int, rounds: int = 3) -> None:
    """Workers split what is missing; a round cut short by a dead worker is followed by another."""
    for _ in range(rounds):
        missing = target - count_finished(study)
        if missing <= 0:
            return
        workers = min(options.workers, missing)
        shares = [missing // workers + (i < missing % workers) for i in range(workers)]
        try:
            # A dead worker's trial is failed and re-queued at once (retried_from), before the heartbeat's grace.
            died = run_workers(_work, [(spec, options, share, target, None, i) for i, share in enumerate(shares)],
                               on_death=lambda: fail_dead_local_trials(study))
        except KeyboardInterrupt:
            fail_dead_local_trials(study)  # a worker killed after the grace period left its trial RUNNING
            raise
        if died:
            tqdm.write(f"{spec.name}: {died} worker process{'es' if died > 1 else ''} died; "
                       "their trials are failed and retried")
        fail_dead_local_trials(study)


def pareto_table(study: optuna.Study) -> str:
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return f"{study.study_name}: no complete trials"
    final = record.final_generation(complete)  # a population: its members as they ended
    among = f"{len(final)} final members of {len(complete)} complete" if len(final) < len(complete) else f"{len(complete)} complete"
    ours = record.our_best_trials(study)
    if len(study.directions) == 1:
        best = ours[:1] or [study.best_trial]
        title = f"Best trial of {study.study_name} (of {among}):"
    else:
        best = sorted(ours or study.best_trials, key=lambda t: t.values)
        title = f"Pareto trials of {study.study_name} ({len(best)} of {among}):"
    header = f"{'trial':>5}  " + "  ".join(f"{n:>18}" for n in names) + "  reference  params"
    rows = [title, header]
    for t in best:
        values = "  ".join(f"{v:>18.6g}" for v in t.values)
        params = record.params_text(t)
        rows.append(f"{t.number:>5}  {values}  {t.user_attrs.get('reference', ''):>9}  {params}")
    return "\n".join(rows)


def cache_share(study: optuna.Study) -> str:
    """How many of the finished trials' epochs the trajectory cache served."""
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    epochs = sum(record.TrialRecord.of(t).epochs for t in trials if record.is_ours(t))
    cached = sum(t.user_attrs.get(record.CACHED_EPOCHS, 0) for t in trials)
    return served_line(study.study_name, cached=cached, epochs=epochs)


def run_all(specs: Sequence[StudySpec], options: RunOptions) -> list[optuna.Study]:
    tasks = [check_study(spec, options) for spec in specs]  # every file's refusals before any study runs or writes
    storage = options.open_storage()
    for spec in specs:
        check_existing(spec, storage)
    studies = []
    for spec, task in zip(specs, tasks, strict=True):
        start = time.perf_counter()
        warning = constant_cost(spec)
        if warning:  # when the storage has taken the study and it starts
            tqdm.write(warning, file=sys.stderr)
        with interrupts.as_exception():  # from the first write on, Ctrl-C fails the running trial and closes the storage
            study = _run_study(spec, options, task)
        print(pareto_table(study))
        if options.cache_dir is not None:
            print(cache_share(study))
        print(f"{spec.name}: {time.perf_counter() - start:.1f} s in storage {mask_url(options.storage)}")
        studies.append(study)
    print(next_steps([s.study_name for s in studies], options))
    return studies


def next_steps(names: Sequence[str], options: RunOptions) -> str:
    """The commands that look at what ``optimize`` made (storage URL shown with its password masked)."""
    url = mask_url(options.storage)
    storage = "" if url == DEFAULT_STORAGE else f" --storage {shlex.quote(url)}"
    default = beside_storage(options.storage, ".artifacts") or server_artifacts()
    artifacts = "" if options.artifact_dir in (None, default) else f" --artifact-dir {shlex.quote(options.artifact_dir or '')}"
    where = [] if beside_storage(options.storage, ".artifacts") or options.artifact_dir is None else [
        f"  trial figures are in {options.artifact_dir} (the database holds no files): dashboard finds them from this "
        "folder (or with $LRPO_ARTIFACT_DIR); give workers on other machines --artifact-dir on a folder they share"]
    return "\n".join([
        "Next:", *where,
        f"  browse every trial (figures and notes): python -m lrpo_study dashboard{storage}{artifacts}",
        f"  one HTML page comparing the studies:    python -m lrpo_study report{storage} -o report.html",
        f"  take a tuned schedule home:             python -m lrpo_study export{storage} --study {shlex.quote(names[-1])} --pareto -o settings.json",
    ])
