"""One trial of a study, trained by any loop: ours, yours, Lightning's or the Hugging Face Trainer's.

    spec = lrpo_study.load_spec("studies/mine.toml")
    study = lrpo_study.create_study(spec, storage="sqlite:///mine.db")

    def objective(trial):
        run = lrpo_study.TrialRun(trial, spec)
        torch.manual_seed(run.seed)
        model = make_model()
        optimizer = run.make_optimizer(model.parameters())
        schedule = run.make_schedule(optimizer, steps_per_epoch=len(train_loader), params=model.parameters())
        for epoch in range(run.epochs):
            ...  # train: schedule.step() after each optimizer step (interval "step") or epoch ("epoch")
            run.report(train_loss=..., val_loss=..., val_accuracy=...)  # may raise optuna.TrialPruned
        return run.finish()

    study.optimize(objective, n_trials=spec.n_trials)

The run suggests the method's hyperparameters from the spec's search space, writes the trial
record (``views/record.py``: the same keys as the built-in loop's trials), asks the study's early-stopping
rule after every epoch, and publishes the trial's figure and note. It is the one writer of the trial
record: the built-in loop's objective goes through it too.
"""

from __future__ import annotations

import math
import os
import platform
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

import optuna
import torch

from lrpo_study import metrics
from lrpo_study._version import __version__
from lrpo_study.errors import UserError, exception_chain
from lrpo_study.schedules import NEEDS_TOTAL_STEPS, SCHEDULES, Schedule, make_schedule
from lrpo_study.tasks import batch_len
from lrpo_study.training.compute import FlopCounter, batch_tokens, shape_key
from lrpo_study.training.hyperparameters import TRAIN_PARAMS, resolve, with_defaults
from lrpo_study.training.optimizers import OPTIMIZER_PARAMS, build_optimizer
from lrpo_study.views import record
from lrpo_study.views.trial import publish

from .pruning import QuantileRule
from .spec import StudySpec

__all__ = ["StepCount", "TrialFailed", "TrialRun", "TrialRunError", "suggest"]


class TrialRunError(ValueError):
    """The loop used the trial API wrongly (no epoch reported, one too many, accuracy missing)."""


class TrialFailed(Exception):
    """This trial ends FAIL, for the reason given (the study goes on): a loop that returned before its planned
    epochs without saying why (``stop_early``), or one that ran past its time."""


_ALWAYS = (metrics.TRAIN_LOSS, metrics.VAL_LOSS, metrics.LR, metrics.SECONDS)  # what every report has
_COST_HINT = {
    metrics.FLOPS: " (wrap each training step in run.count_step(batch), or run.declare_step_cost(flops=...))",
    metrics.SAMPLES: " (wrap each training step in run.count_step(batch), or run.declare_step_cost(samples=...))",
    metrics.TOKENS: " (run.count_step(batch, tokens=...), or run.declare_step_cost(tokens=...))",
}


class _StepCosts:
    """What a user loop's steps cost in the current epoch: counted around steps (``count_step``) or declared
    per optimizer step (``declare_step_cost``)."""

    def __init__(self) -> None:
        self.counter = FlopCounter()
        self.declared: dict[str, int] = {}
        self.epoch: dict[str, int] = {}

    def add(self, costs: Mapping[str, int | None]) -> None:
        """Add one step's costs, by curve name (flops, samples, tokens); None: not known."""
        for name, value in costs.items():
            if value is not None:
                self.epoch[name] = self.epoch.get(name, 0) + int(value)

    def close_epoch(self, given: Mapping[str, float | None]) -> dict[str, int]:
        """The epoch's cost curves' values (what was counted or declared, overridden by what the report gives)."""
        counted = {**self.epoch, **{k: int(v) for k, v in given.items() if v is not None}}
        self.epoch = {}
        return counted


class StepCount:
    """One training step being counted (``TrialRun.count_step``): a context manager, or ``start()`` and
    ``stop()`` for a framework's hooks; ``more(batch)`` adds a further micro-batch's samples and tokens
    (gradient accumulation: the step's FLOPs are keyed by its first batch's shapes)."""

    def __init__(self, costs: _StepCosts, batch: Any, *, samples: int | None, tokens: int | None) -> None:
        self._costs = costs
        self._key = shape_key(batch) if batch is not None else ("samples", samples)
        self._samples, self._tokens = 0, 0
        self._counting: Any = None
        self.more(batch, samples=samples, tokens=tokens)

    def more(self, batch: Any, *, samples: int | None = None, tokens: int | None = None) -> None:
        self._samples += batch_len(batch) if samples is None else samples
        if tokens is None and isinstance(batch, Mapping):
            tokens = batch_tokens(batch)
        self._tokens += tokens or 0

    def start(self) -> None:
        self._counting = self._costs.counter.measure(self._key)
        self._counting.__enter__()

    def stop(self, *, completed: bool = True) -> None:
        counting, self._counting = self._counting, None
        if counting is None:
            return
        if not completed:  # a step cut short is not the step's count
            error = RuntimeError("the step did not complete")
            counting.__exit__(RuntimeError, error, None)
            return
        counting.__exit__(None, None, None)
        self._costs.add({metrics.FLOPS: self._costs.counter[self._key], metrics.SAMPLES: self._samples,
                         metrics.TOKENS: self._tokens or None})

    def __enter__(self) -> StepCount:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.stop(completed=kind is None)


class _Reads(dict[str, Any]):
    """A dict that remembers which keys were read: whether a searched hyperparameter, or a ``[task]`` option,
    reached the loop at all."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)

    def _all(self) -> None:
        self.read.update(dict.keys(self))

    def __iter__(self) -> Any:
        self._all()
        return super().__iter__()

    def keys(self) -> Any:
        self._all()
        return super().keys()

    def items(self) -> Any:
        self._all()
        return super().items()

    def values(self) -> Any:
        self._all()
        return super().values()

    def copy(self) -> dict[str, Any]:
        self._all()
        return dict(super().items())


def suggest(trial: optuna.trial.BaseTrial, spec: StudySpec) -> dict[str, Any]:
    """Fixed values plus one suggestion per active search parameter, in file order."""
    values = dict(spec.fixed)
    for p in spec.search:
        if not p.active(values):
            continue
        if p.type == "int":
            assert p.low is not None and p.high is not None  # the spec's parser checked them
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        elif p.type == "float":
            assert p.low is not None and p.high is not None
            values[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), step=p.step, log=p.log)
        else:
            values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
    return values


class TrialRun:
    """The trial API: hyperparameters in, one report per epoch, objective values out.

    ``trial`` is the Optuna trial of a study made from ``spec`` (``create_study``, or ``optimize``).
    ``defaults`` are the loop's own defaults for hyperparameters the spec leaves open (a built-in
    task's recipe); ``seed`` overrides the spec's training seed (``confirm``); with ``test``, the
    loop is asked to score its test data (``wants_test``) and report it with ``report_test``.
    """

    def __init__(
        self, trial: optuna.trial.BaseTrial, spec: StudySpec, *, defaults: Mapping[str, Any] | None = None,
        task: str | None = None, device: str | torch.device = "cpu", seed: int | None = None,
        artifact_dir: str | None = None, test: bool = False, has_accuracy: bool | None = None,
    ) -> None:
        self.trial, self.spec, self.artifact_dir = trial, spec, artifact_dir
        self._hp = resolve(spec.method, with_defaults(spec.method, suggest(trial, spec), defaults or {}))
        self.hyperparameters = _Reads(self._hp)  # what the loop reads of it, to check that a searched one reaches it
        self._options = _Reads(spec.task_options)
        self._stopped_early: str | None = None
        self.seed = spec.train_seed if seed is None else seed
        self.wants_test = test
        self.curves: dict[str, list[float]] = {name: [] for name in _ALWAYS}
        self._costs = _StepCosts()
        self.cached_epochs = 0
        self.extras: dict[str, Any] = {}
        self.test_scores: dict[str, float] = {}
        self.outcome: str | None = None  # complete or pruned (diverged is pruned)
        self._values: float | tuple[float, ...] | None = None
        self._pruned_reason = ""
        self._optimizer: torch.optim.Optimizer | None = None
        self._made: torch.optim.Optimizer | None = None  # the one make_optimizer built
        self._step_lrs: list[float] = []  # the first group's lr at each optimizer step since the last report
        self._has_accuracy = has_accuracy
        self._clock = time.perf_counter()
        self._recording = not isinstance(trial, optuna.trial.FixedTrial)  # confirm re-runs with a FixedTrial
        self._set({
            record.METHOD: spec.method, record.HYPERPARAMETERS: self._hp,
            record.TASK: task or spec.loop or spec.task, record.TASK_OPTIONS: spec.task_options, record.SEED: self.seed,
            record.DEVICE: str(device), record.TORCH_VERSION: torch.__version__, record.VERSION: __version__,
            record.HOST: platform.node(), record.PID: os.getpid(), record.THREADS: torch.get_num_threads(),
        })

    @property
    def epochs(self) -> int:
        """How many epochs this trial trains (report exactly this many, unless it is pruned)."""
        return int(self.hyperparameters["epochs"])  # read through the record of what reached the loop

    @property
    def _epochs(self) -> int:  # the run's own reads: not the loop reaching the searched value
        return int(self._hp["epochs"])

    @property
    def method(self) -> str:
        return self.spec.method

    @property
    def options(self) -> dict[str, Any]:
        """The study file's ``[task]`` options besides ``loop`` (the loop's own settings); an option the loop
        never reads is refused after its first trial (a typo would otherwise be ignored)."""
        return self._options

    def stop_early(self, reason: str) -> None:
        """Say that the loop stops before its planned epochs on purpose (its own early stopping): the trial
        completes with the epochs it reported, ``reason`` in its record. Without it, fewer epochs fail the trial."""
        if not isinstance(reason, str) or not reason.strip():
            raise TrialRunError(f"stop_early needs a reason, got {reason!r}")
        self._stopped_early = reason
        self._set({record.STOPPED_EARLY: reason})

    def make_optimizer(self, params: Iterable[torch.nn.Parameter], *, matrices_only: bool = False) -> torch.optim.Optimizer:
        """The optimizer the hyperparameters name (SGD or AdamW, with their lr, momentum, betas, weight decay)."""
        optimizer = build_optimizer(params, self._hp, matrices_only=matrices_only)
        self.hyperparameters.read.update({"lr", *OPTIMIZER_PARAMS})
        self._made = optimizer
        self._watch(optimizer)
        return optimizer

    def make_schedule(
        self, optimizer: torch.optim.Optimizer, *, steps_per_epoch: int, params: Iterable[torch.Tensor] | None = None,
    ) -> Schedule:
        """The method's schedule on ``optimizer`` (yours or ``make_optimizer``'s); ``steps_per_epoch``: optimizer
        steps per epoch; ``params``: the model's parameters (the curvature method estimates tr(H) on them).
        An optimizer of yours gets the trial's ``lr`` (its param groups keep their ratios to the first one)."""
        if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
            raise TrialRunError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch=}")
        if optimizer is not self._made:  # else a searched lr would never reach it
            first = optimizer.param_groups[0]["lr"]
            for group in optimizer.param_groups:
                group["lr"] = self._hp["lr"] * (group["lr"] / first if first else 1.0)
        self._watch(optimizer)
        self._set({record.STEPS_PER_EPOCH: steps_per_epoch})
        self._clock = time.perf_counter()  # the first epoch's seconds: training, not building data and model
        total = self._epochs * steps_per_epoch if self.method in NEEDS_TOTAL_STEPS else None
        try:  # settings that only meet the run's length here (a warm-up longer than the run) are bad input
            schedule = make_schedule(self.method, optimizer, self._hp, total_steps=total, params=params,
                                     seed=self.seed, ignore=TRAIN_PARAMS)
        except ValueError as exc:
            raise TrialRunError(f"{self.method} with {steps_per_epoch} steps per epoch: {exc}") from None
        self.hyperparameters.read.update({"lr", "epochs", *SCHEDULES[self.method].PARAMS})
        return schedule

    def _watch(self, optimizer: torch.optim.Optimizer) -> None:
        """Record the lr of every step (the epoch's mean lr is its curve point, as in the built-in loop)."""
        if optimizer is self._optimizer:
            return
        self._optimizer = optimizer
        def before_step(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self._step_lrs.append(float(opt.param_groups[0]["lr"]))
            self._costs.add(self._costs.declared)

        optimizer.register_step_pre_hook(before_step)

    def report(
        self, *, train_loss: float, val_loss: float, val_accuracy: float | None = None, lr: float | None = None,
        seconds: float | None = None, flops: float | None = None, samples: float | None = None, tokens: float | None = None,
        **scores: float,
    ) -> None:
        """One epoch's numbers: its losses, any validation metric of yours (``val_f1=0.83``: a study may name it
        as an objective, ``"max:final_val_f1"``), and what the epoch cost. ``lr``: by default the mean over the
        epoch's optimizer steps; ``seconds``: by default the time since the previous report or since the run
        began; ``flops``, ``samples``, ``tokens``: by default what ``count_step`` counted or ``declare_step_cost``
        declared for the epoch's steps. Raises ``optuna.TrialPruned`` when the study's rule stops the trial (its
        record and figure are written first) or a loss or metric is not finite (diverged); the loop lets it propagate."""
        n = len(self.curves.get(metrics.VAL_LOSS, []))
        if n >= self._epochs:
            raise TrialRunError(f"trial {self.trial.number} trains {self._epochs} epochs; a report for epoch {n + 1} is one too many")
        for name in scores:
            if not metrics.is_metric_name(name) or name in metrics.CURVES:
                raise TrialRunError(f"report({name}=...): a metric's name is a lowercase identifier other than "
                                    f"{', '.join(metrics.CURVES)}")
        costs = {metrics.FLOPS: flops, metrics.SAMPLES: samples, metrics.TOKENS: tokens}
        pending = {*self._costs.epoch, *(name for name, value in costs.items() if value is not None)}
        names = {*_ALWAYS, *([metrics.VAL_ACCURACY] if val_accuracy is not None else []), *scores, *pending}
        self._check_curves(names, first=n == 0)
        if n == 0:
            self._check_searched_reached(lr_given=lr is not None)
        if lr is None:
            if self._optimizer is None:
                raise TrialRunError("report(lr=...) is needed when the optimizer was not made by make_optimizer or make_schedule")
            lr = sum(self._step_lrs) / len(self._step_lrs) if self._step_lrs else float(self._optimizer.param_groups[0]["lr"])
        self._step_lrs = []
        now = time.perf_counter()
        values: dict[str, float] = {
            metrics.TRAIN_LOSS: float(train_loss), metrics.VAL_LOSS: float(val_loss), metrics.LR: float(lr),
            metrics.SECONDS: now - self._clock if seconds is None else float(seconds),
            **({} if val_accuracy is None else {metrics.VAL_ACCURACY: float(val_accuracy)}),
            **{name: float(value) for name, value in scores.items()},
            **self._costs.close_epoch(costs),
        }
        self._clock = now
        for name, value in values.items():
            self.curves.setdefault(name, []).append(value)
        bad = [name for name, value in values.items() if name != metrics.LR and not math.isfinite(value)]
        if bad:
            self.diverged(f"non-finite {bad[0]} {values[bad[0]]}", n + 1)
        self.observe_epoch(n + 1)

    def count_step(self, batch: Any = None, *, samples: int | None = None, tokens: int | None = None) -> StepCount:
        """Wrap one training step (forward, backward, optimizer step, schedule step) in this to count what it
        costs: its FLOPs with torch's ``FlopCounterMode`` the first time the batch's shapes occur (reused after,
        so counting does not slow the loop), its samples (the batch's leading dimension, or ``samples``) and its
        tokens (a dict batch's attention mask or ``input_ids``, or ``tokens``). The study may then minimize
        ``train_flops``, ``train_samples`` or ``train_tokens``, the same on any machine under any load.

            with run.count_step((x, y)):
                loss = F.cross_entropy(model(x), y); optimizer.zero_grad(); loss.backward(); optimizer.step()
        """
        if samples is None and batch is None:
            raise TrialRunError("count_step needs the batch or samples=")
        if self._costs.declared:
            raise TrialRunError("this run declared its step cost (declare_step_cost): count steps or declare, not both")
        return StepCount(self._costs, batch, samples=samples, tokens=tokens)

    def declare_step_cost(self, *, samples: int | None = None, tokens: int | None = None, flops: int | None = None) -> None:
        """What each optimizer step costs, when the loop cannot wrap its steps in ``count_step`` (a framework's
        loop): every step of the optimizer made by ``make_optimizer`` or handed to ``make_schedule`` adds it."""
        declared = {metrics.SAMPLES: samples, metrics.TOKENS: tokens, metrics.FLOPS: flops}
        for name, value in declared.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise TrialRunError(f"declare_step_cost: {name} must be an integer >= 0, got {value!r}")
        if self._costs.counter.counted:
            raise TrialRunError("this run counts its steps (count_step): count steps or declare, not both")
        self._costs.declared = {name: value for name, value in declared.items() if value is not None}

    def report_test(self, *, loss: float, accuracy: float | None = None, **scores: float) -> None:
        """The final model's score on the loop's test data (asked for by ``confirm``: ``wants_test``), with the
        same metrics it reports on validation data (``f1=0.8`` for ``val_f1``)."""
        values = {"loss": loss, **({} if accuracy is None else {"accuracy": accuracy}), **scores}
        self.test_scores = {f"test_{name}": float(value) for name, value in values.items()}

    def finish(self) -> float | tuple[float, ...]:
        """Write the record, publish the figure and note; the objective values in the spec's order.
        Raises ``optuna.TrialPruned`` again for a pruned trial (a callback that stopped a fit cleanly)."""
        if self.outcome == "pruned":
            raise optuna.TrialPruned(self._pruned_reason)
        if self._values is not None:
            return self._values
        n = len(self.curves.get(metrics.VAL_LOSS, []))
        if n == 0:
            raise TrialRunError(f"trial {self.trial.number}'s loop returned without reporting any epoch (call report() once per epoch)")
        unread = sorted(set(dict.keys(self._options)) - self._options.read)
        if unread and self._recording and self.spec.loop is not None:  # a task factory takes its options itself
            raise TrialRunError(f"[task] option {unread[0]!r} was never read by the loop (through run.options): "
                                f"a typo? it reads {sorted(self._options.read) or 'none'}")
        if n < self._epochs and self._stopped_early is None:
            self._write_end()
            raise TrialFailed(f"the loop reported {n} of its {self._epochs} epochs and returned; call "
                              "run.stop_early(reason) when it stops early on purpose")
        values = tuple(o.value(self.curves) for o in self.spec.parsed_objectives)
        self._write_end()
        if not all(math.isfinite(v) for v in values):
            self._end_pruned(f"non-finite objective values {values}", n, outcome="pruned")
        self.outcome = "complete"
        self._publish()
        self._values = values[0] if len(values) == 1 else values
        return self._values

    def diverged(self, reason: str, epoch: int) -> NoReturn:
        """End the trial as diverged (pruned, with the reason in its record)."""
        self._end_pruned(f"diverged: {reason}", epoch, outcome="diverged")

    def observe_epoch(self, epoch: int, *, from_cache: bool = False) -> None:
        """After epoch ``epoch`` (its numbers in ``curves``): ask the study's early-stopping rule."""
        self.cached_epochs += from_cache
        reason = self._stop_reason(epoch)
        if reason is not None:
            self._end_pruned(reason, epoch, outcome="pruned")

    def _stop_reason(self, epoch: int) -> str | None:
        spec = self.spec
        if not self._recording or spec.pruning.rule == "none":
            return None
        quality = spec.quality(has_accuracy=metrics.VAL_ACCURACY in self.curves)  # as report scores it
        if len(spec.objectives) == 1:
            self.trial.report(quality.value(self.curves), epoch)
            if epoch >= self._epochs:
                return None  # trained to the end: a finished result, whatever a pruner would say now
            return f"optuna {spec.pruning.rule} pruner at epoch {epoch}" if self.trial.should_prune() else None
        if spec.method == "lrpo" and epoch <= self._hp.get("pretrain_epochs", 0):
            return None  # every LRPO trial's pretrain at the same lr is identical by construction: nothing to decide
        if spec.pruning.rule != "quantile":
            return None
        cost = next((o for o in spec.parsed_objectives if o.is_cost and o.reduction == "sum"), metrics.TRAIN_SECONDS)
        assert isinstance(self.trial, optuna.Trial)  # recording: a trial of a study
        return QuantileRule(spec.pruning, quality=quality, cost=cost).reason(
            self.trial.study, epoch=epoch, total_epochs=self._epochs, curves=self.curves,
            length_dependent=SCHEDULES[spec.method].length_dependent,
        )

    def _check_searched_reached(self, *, lr_given: bool) -> None:
        """At the first report: every hyperparameter this trial searched reached the loop (it read it, or had
        the run build the optimizer or schedule that uses it); else every trial would train the same run."""
        if not self._recording:
            return
        searched = [name for name in self.trial.params if name in self._hp]
        missed = [name for name in searched if name not in self.hyperparameters.read]
        if missed:
            how = (" and reports its own lr" if lr_given and "lr" in missed else "")
            raise TrialRunError(
                f"the study searches {missed[0]!r}, but it never reached the loop{how}: every trial would train the "
                f"same run; read run.hyperparameters[{missed[0]!r}], or build the optimizer and schedule with "
                "run.make_optimizer / run.make_schedule"
            )

    def _check_curves(self, names: set[str], *, first: bool) -> None:
        """The first report records every curve an objective needs; later ones record the same curves."""
        if first:
            if self._has_accuracy is not None and (metrics.VAL_ACCURACY in names) != self._has_accuracy:
                raise TrialRunError(f"the task {'has' if self._has_accuracy else 'has no'} accuracy, "
                                    f"but the report {'lacks' if self._has_accuracy else 'gives'} val_accuracy")
            for objective in self.spec.parsed_objectives:
                if objective.curve not in names:
                    raise TrialRunError(
                        f"objective {objective.spelling!r} needs {objective.curve}, but the loop reports "
                        f"{', '.join(sorted(n for n in names if n.startswith('val_')))} and the costs "
                        f"{', '.join(n for n, c in metrics.COSTS.items() if c in names)}{_COST_HINT.get(objective.curve, '')}"
                    )
        elif names != set(self.curves):
            changed = sorted(names ^ set(self.curves))
            raise TrialRunError(f"report the same metrics in every epoch: {changed[0]} is in one report and not another")

    def _end_pruned(self, reason: str, epoch: int, *, outcome: str) -> NoReturn:
        self._write_end()
        self._set({record.PRUNED_REASON: reason, record.PRUNED_EPOCH: epoch})
        self.outcome, self._pruned_reason = "pruned", reason
        self._publish(outcome)
        raise optuna.TrialPruned(reason)

    def _write_end(self) -> None:
        curves = self.curves
        known = {o.name: o for o in [*metrics.available(curves), *self.spec.parsed_objectives]
                 if curves.get(o.curve) or o.is_cost and o.curve in curves}  # a quality needs an epoch
        attrs: dict[str, Any] = {
            record.CURVES: curves,
            **{name: int(o.value(curves)) if o.reduction == "count" else o.value(curves) for name, o in known.items()},
            record.CACHED_EPOCHS: self.cached_epochs, **self.extras,
        }
        self._set(attrs)

    def _set(self, attrs: Mapping[str, Any]) -> None:
        if self._recording:
            for key, value in attrs.items():
                self.trial.set_user_attr(key, value)

    def _publish(self, outcome: str | None = None) -> None:
        """The dashboard's figure and note; a failure there must not cost the trial its result."""
        if not isinstance(self.trial, optuna.Trial):  # confirm's FixedTrial: nothing is recorded
            return
        try:
            publish(self.trial, outcome=outcome or self.outcome or "complete", artifact_dir=self.artifact_dir)
        except Exception as exc:  # noqa: BLE001  (a full disk, a read-only artifact folder, ...)
            if any(isinstance(e, UserError) for e in exception_chain(exc)):
                raise  # the storage gone for good: the study's end, said once by whoever reports it
            warnings.warn(f"could not write trial {self.trial.number}'s dashboard figure or note: {exc}", stacklevel=3)
