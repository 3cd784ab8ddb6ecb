"""The one training loop every method and every task shares. No Optuna here: callers attach hooks."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from lrpo_study import interrupts, metrics
from lrpo_study.errors import UserError
from lrpo_study.schedules import SCHEDULES, Schedule, make_schedule
from lrpo_study.tasks import Batch, Task, batch_len, collate, loader, model_identity, to_device

from .cache import (
    TrajectoryCache,
    cache_context,
    resume_from_cache,
    resume_from_step_cache,
    step_keys,
    step_plan,
    trajectory_key,
)
from .compute import FlopCounter, batch_tokens, shape_key
from .hyperparameters import TRAIN_PARAMS
from .loop_state import LoopState
from .optimizers import build_optimizer

_FLOP_CURVES = (metrics.FLOPS, metrics.EVAL_FLOPS)


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int  # 1-based: the number of epochs finished
    train_loss: float
    val_loss: float
    val_accuracy: float | None  # None for a task without accuracy
    lr: float  # mean lr of the first param group over the epoch's batches
    seconds: float  # this epoch's training time (evaluation excluded, schedule overhead included)
    history: Mapping[str, list[float]] = field(default_factory=dict, repr=False)  # all curves so far
    from_cache: bool = False  # restored from the trajectory cache rather than computed by this run

    @classmethod
    def at(cls, curves: Mapping[str, list[float]], epoch: int, *, from_cache: bool = False) -> EpochMetrics:
        """The metrics of ``epoch`` (1-based) as recorded in ``curves``."""
        m = metrics
        accuracy = curves[m.VAL_ACCURACY][epoch - 1] if m.VAL_ACCURACY in curves else None
        return cls(
            epoch, curves[m.TRAIN_LOSS][epoch - 1], curves[m.VAL_LOSS][epoch - 1], accuracy, curves[m.LR][epoch - 1],
            curves[m.SECONDS][epoch - 1], {k: v[:epoch] for k, v in curves.items()}, from_cache,
        )


class Diverged(Exception):
    """The loss went non-finite; the run cannot continue."""

    def __init__(self, epoch: int, reason: str) -> None:
        super().__init__(f"diverged at epoch {epoch}: {reason}")
        self.epoch = epoch
        self.reason = reason


@dataclass
class TrainResult:
    method: str
    hyperparameters: dict[str, Any]
    task: str
    task_options: dict[str, Any]
    model_parameters: int
    seed: int
    device: str
    curves: dict[str, list[float]]
    extras: dict[str, Any] = field(default_factory=dict)

    def value(self, objective: str | metrics.Objective) -> float:
        """An objective of this run (``lrpo_study.metrics``: "final_val_loss", "train_flops", "max:final_val_f1")."""
        o = objective if isinstance(objective, metrics.Objective) else metrics.parse_objective(objective)
        return o.value(self.curves)

    @property
    def epochs(self) -> int:
        return len(self.curves[metrics.VAL_LOSS])

    @property
    def train_seconds(self) -> float:
        return self.value(metrics.TRAIN_SECONDS)

    def summary(self) -> dict[str, Any]:
        """Everything about the run, its objectives by name: the qualities of its validation curves, its costs."""
        values = {o.name: o.value(self.curves) for o in metrics.available(self.curves)}
        return {
            "method": self.method, "task": self.task, "task_options": self.task_options,
            "hyperparameters": self.hyperparameters, "model_parameters": self.model_parameters, "seed": self.seed,
            "device": self.device, **values, "curves": self.curves, **self.extras,
        }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but torch sees no CUDA device; use auto or cpu")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; allowed: auto, cpu, cuda")
    return torch.device(name)


def _make_probe(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, task: Task, *, batch_size: int, steps: int, seed: int,
    device: torch.device, counter: FlopCounter,
) -> Callable[[float], float]:
    """probe(α): train ``steps`` batches at initial_lr·α from a snapshot, return the loss on a
    held training batch, and restore everything (model, optimizer, RNG). ``counter`` counts its steps
    and its held loss (the same shapes at every probe: one counted step each)."""
    gen = torch.Generator().manual_seed(seed + 7919)
    order = torch.randperm(task.train_size, generator=gen)
    batches = [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]
    held = order[steps * batch_size:(steps + 1) * batch_size]

    def batch(idx: torch.Tensor) -> Batch:
        if isinstance(task.train, tuple):
            x, y = task.train
            idx = idx.to(x.device)
            return x[idx], y[idx]
        return to_device(collate(task.train, idx.tolist()), device)

    def probe(alpha: float) -> float:
        model_state = copy.deepcopy(model.state_dict())
        opt_state = copy.deepcopy(optimizer.state_dict())
        lrs = [g["lr"] for g in optimizer.param_groups]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            model.train()
            for g in optimizer.param_groups:
                g["lr"] = g["initial_lr"] * alpha
            for idx in batches:
                step_batch = batch(idx)
                with counter.count(("probe step", shape_key(step_batch))):
                    optimizer.zero_grad(set_to_none=True)
                    task.batch_loss(model, step_batch).backward()
                    optimizer.step()
            model.eval()
            held_batch = batch(held)
            with torch.no_grad(), counter.count(("probe loss", shape_key(held_batch))):
                loss = float(task.batch_loss(model, held_batch))
        model.load_state_dict(model_state)
        optimizer.load_state_dict(opt_state)
        for g, lr in zip(optimizer.param_groups, lrs, strict=True):
            g["lr"] = lr
        return loss if math.isfinite(loss) else float("inf")

    return probe


EpochHook = Callable[[EpochMetrics], None]
StepHook = Callable[[int, torch.Tensor], None]


def epoch_batches(task: Task, order: torch.Tensor, *, batch_size: int, seed: int, device: torch.device) -> Iterator[Batch]:
    """The epoch's batches in ``order``: index slices of the device-resident tensors (the fast path), or
    a DataLoader over the Dataset in that order, its workers seeded from ``seed``."""
    if isinstance(task.train, tuple):
        x, y = task.train
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield x.index_select(0, idx), y.index_select(0, idx)
        return
    batches = loader(task.train, order=order.tolist(), batch_size=batch_size, num_workers=task.num_workers, seed=seed,
                     device=device)
    for batch in batches:
        yield to_device(batch, device, non_blocking=True)


@dataclass(frozen=True)
class EpochWork:
    train_loss: float  # the mean over the epoch's samples
    lr: float  # the mean over its optimizer steps
    flops: int  # FLOPs of its steps, the schedule's work within them included
    tokens: int  # tokens of its batches (sequence tasks)


def train_epoch(
    model: torch.nn.Module, task: Task, optimizer: torch.optim.Optimizer, schedule: Schedule,
    batches: Iterable[Batch], *, samples: int, grad_clip: float = 0.0, on_batch: Callable[[torch.Tensor], None],
    counter: FlopCounter,
) -> EpochWork:
    """One pass over ``batches`` (``samples`` in all). Each step's FLOPs are counted the first time its batch
    shapes and the schedule's phase occur (``counter``) and reused after: exact, at the cost of one counted step."""
    model.train()
    loss_sum = torch.zeros((), device=next(model.parameters()).device)
    lr_sum, steps, flops, tokens = 0.0, 0, 0, 0
    for batch in batches:
        lr_sum += optimizer.param_groups[0]["lr"]
        steps += 1
        key = (shape_key(batch), schedule.step_phase())
        with counter.measure(key):
            loss = task.batch_loss(model, batch)
            schedule.observe(loss)  # the curvature schedule reads the loss graph here
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            schedule.batch_end()
        flops += counter[key]
        if task.sequence:
            tokens += batch_tokens(batch)
        loss_sum += loss.detach() * batch_len(batch)
        on_batch(loss)
    return EpochWork(float(loss_sum) / samples, lr_sum / steps, flops, tokens)


def train(
    *, task: Task, method: str, hyperparameters: Mapping[str, Any], seed: int = 42,
    device: torch.device | str = "cpu", on_epoch: Sequence[EpochHook] = (), on_step: Sequence[StepHook] = (),
    progress: bool = False, probe_steps: int = 3, on_checkpoint: Callable[[dict[str, Any]], object] | None = None,
    resume: Mapping[str, Any] | None = None, cache: TrajectoryCache | None = None, score_test: bool = False,
    count_flops: bool = True,
) -> TrainResult:
    """Train ``task``'s model with ``method``'s schedule; ``hyperparameters`` must be resolved
    (see ``lrpo_study.training.hyperparameters.resolve``).

    Hooks run after each batch (``on_step(global_step, loss)``) and each epoch
    (``on_epoch(metrics)``); an exception raised by a hook stops training.
    ``on_checkpoint(state)`` receives, after each epoch, everything needed to
    continue identically; ``resume=state`` continues from such a state. With
    ``cache``, schedules whose lr is constant per epoch or a function of the step
    start from the longest cached prefix of their trajectory and store the epochs
    they compute (``lrpo_study.training.cache``). ``score_test`` scores the final model on ``task.test``
    (``extras["test_loss"]``, ``["test_accuracy"]``): only ``confirm`` and ``run --test`` ask, so
    no study ever sees the test data. Each epoch's FLOPs are counted (``lrpo_study.training.compute``:
    the curves ``flops`` and ``eval_flops``) unless ``count_flops`` is false.
    """
    hp = dict(hyperparameters)
    device = torch.device(device)
    task = task.to(device)
    torch.manual_seed(seed)
    model = task.build_model().to(device)
    optimizer = build_optimizer(model.parameters(), hp, matrices_only=task.decay_matrices_only)
    n, batch_size, epochs = task.train_size, hp["batch_size"], hp["epochs"]
    per_epoch = task.samples_per_epoch
    counter = FlopCounter(enabled=count_flops)
    probe = _make_probe(model, optimizer, task, batch_size=min(batch_size, n // (probe_steps + 1) or 1), steps=probe_steps,
                        seed=seed, device=device, counter=counter)
    steps_per_epoch = task.steps_per_epoch(batch_size)
    stepwise = cache is not None and SCHEDULES[method].interval == "step" and getattr(SCHEDULES[method], "step_function", False)
    try:  # settings that only meet the run's length here (a warm-up longer than the run) are bad input
        plan = step_plan(method, optimizer, hp, total_steps=epochs * steps_per_epoch, ignore=TRAIN_PARAMS) if stepwise else []
        schedule = make_schedule(
            method, optimizer, hp, total_steps=epochs * steps_per_epoch, params=model.parameters(),
            probe=probe, seed=seed, ignore=TRAIN_PARAMS, counter=counter,
        )
    except ValueError as exc:
        raise UserError(f"{method} on task {task.name!r} ({per_epoch} samples per epoch): {exc}") from None
    state = LoopState(model, optimizer, schedule, torch.Generator(device=device).manual_seed(seed),
                      curves={name: [] for name in task.curves() if count_flops or name not in _FLOP_CURVES},
                      counter=counter)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if not count_flops:
        cache = None  # its entries' curves would lack the FLOPs every other run of the same key has
    if schedule.interval != "epoch" and not stepwise:
        cache = None  # the lr follows values seen within epochs: nothing known in advance to key on
    context = {} if cache is None else cache_context(
        task, seed=seed, device=device, hp=hp, model=model_identity(model, task.compute_loss or task.loss_fn))
    keys = step_keys(context, plan, steps_per_epoch=steps_per_epoch, epochs=epochs) if stepwise else []
    if resume is not None:
        state.restore(resume)
    elif cache is not None:
        if stepwise:
            resume_from_step_cache(cache, keys, state)
        else:
            resume_from_cache(cache, context, state, epochs=epochs, sync=sync)
        # Hooks see cached epochs as if computed, so early stopping decides the same with or without the cache.
        for e in range(1, state.epoch + 1):
            for epoch_hook in on_epoch:
                epoch_hook(EpochMetrics.at(state.curves, e, from_cache=True))

    def after_batch(loss: torch.Tensor) -> None:
        interrupts.raise_if_requested()
        state.step += 1
        for hook in on_step:
            hook(state.step, loss)

    bar = tqdm(total=epochs, initial=state.epoch, desc=method, unit="epoch", disable=not progress, leave=False)
    try:  # close the bar before any exception's message reaches the terminal
        for epoch in range(state.epoch + 1, epochs + 1):
            state.lr_history.append([float(lr) for lr in schedule.get_last_lr()])
            start = time.perf_counter()
            order = torch.randperm(n, device=device, generator=state.perm_gen)[:per_epoch]
            batches = epoch_batches(task, order, batch_size=batch_size, seed=(seed * 1_000_003 + epoch) % 2**63, device=device)
            work = train_epoch(
                model, task, optimizer, schedule, batches, samples=len(order), grad_clip=hp["grad_clip"], on_batch=after_batch,
                counter=counter,
            )
            sync()
            seconds = time.perf_counter() - start
            train_loss = work.train_loss
            if not math.isfinite(train_loss):
                raise Diverged(epoch, f"train loss is {train_loss}")
            with counter.measure("evaluation"):  # the validation split's shapes are the same every epoch
                scores = task.score(model, task.val)
            if not math.isfinite(scores[metrics.VAL_LOSS]):
                raise Diverged(epoch, f"validation loss is {scores[metrics.VAL_LOSS]}")
            state.epoch = epoch
            state.train_seconds.append(seconds)
            state.train_flops.append(work.flops)
            row = {**scores, metrics.TRAIN_LOSS: train_loss, metrics.LR: work.lr, metrics.SECONDS: seconds,
                   metrics.FLOPS: work.flops, metrics.EVAL_FLOPS: counter["evaluation"], metrics.SAMPLES: len(order),
                   metrics.TOKENS: work.tokens}
            for name, curve in state.curves.items():  # tokens only for a sequence task, accuracy only with accuracy
                curve.append(row[name] if isinstance(row[name], int) else float(row[name]))  # counts stay exact
            if cache is not None:
                # Stored before the schedule's epoch step: a trial branching here takes that step itself.
                cache.put(keys[epoch - 1] if stepwise else trajectory_key(context, state.lr_history), state.snapshot())
            if epoch < epochs:  # the schedule's work between epochs (LRPO's probes and predictor) is the epoch's
                seconds, extra = state.epoch_step(train_loss, scores[metrics.VAL_LOSS], sync)
                state.curves[metrics.SECONDS][-1] += seconds
                if count_flops:
                    state.curves[metrics.FLOPS][-1] += extra
            bar.update(1)
            accuracy = scores.get(metrics.VAL_ACCURACY)
            bar.set_postfix(loss=f"{train_loss:.4f}", **({"acc": f"{accuracy:.4f}"} if accuracy is not None else {}))
            for epoch_hook in on_epoch:
                epoch_hook(EpochMetrics.at(state.curves, epoch))
            if on_checkpoint is not None:
                on_checkpoint(state.snapshot())
    finally:
        bar.close()
    result = TrainResult(
        method, hp, task.name, dict(task.options), sum(p.numel() for p in model.parameters()), seed, str(device),
        state.curves, {"cached_epochs": state.cached_epochs, **schedule.extras()},
    )
    if score_test and task.test is not None:
        result.extras.update(task.score(model, task.test, split="test"))
    return result
