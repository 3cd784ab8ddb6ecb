"""The one training loop every method shares. No Optuna here: callers attach hooks."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from .cache import TrajectoryCache, trajectory_key
from .data import Split
from .errors import UserError
from .models import build_model, count_parameters
from .schedules import LRPO, LRSchedule, make_schedule

CURVES = ("train_loss", "val_loss", "val_accuracy", "lr", "seconds")


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int  # 1-based: the number of epochs finished
    train_loss: float
    val_loss: float
    val_accuracy: float
    lr: float  # mean lr of the first param group over the epoch's batches
    seconds: float  # this epoch's training time (evaluation excluded, schedule overhead included)
    history: Mapping[str, list[float]] = field(default_factory=dict, repr=False)  # all curves so far
    from_cache: bool = False  # restored from the trajectory cache rather than computed by this run


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
    model: str
    model_parameters: int
    seed: int
    device: str
    curves: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CURVES})
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.curves["val_accuracy"])

    @property
    def best_val_accuracy(self) -> float:
        return max(self.curves["val_accuracy"])

    @property
    def final_val_accuracy(self) -> float:
        return self.curves["val_accuracy"][-1]

    @property
    def final_val_loss(self) -> float:
        return self.curves["val_loss"][-1]

    @property
    def train_seconds(self) -> float:
        return sum(self.curves["seconds"])

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method, "model": self.model, "hyperparameters": self.hyperparameters,
            "model_parameters": self.model_parameters, "seed": self.seed, "device": self.device,
            "best_val_accuracy": self.best_val_accuracy, "final_val_accuracy": self.final_val_accuracy,
            "final_val_loss": self.final_val_loss, "epochs": self.epochs,
            "train_seconds": self.train_seconds, "curves": self.curves, **self.extras,
        }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but torch sees no CUDA device; use auto or cpu")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; allowed: auto, cpu, cuda")
    return torch.device(name)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, chunk: int = 8192) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (a fraction) of ``model`` on (x, y)."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for i in range(0, len(x), chunk):
        out = model(x[i:i + chunk])
        loss_sum += F.cross_entropy(out, y[i:i + chunk], reduction="sum")
        correct += (out.argmax(1) == y[i:i + chunk]).sum()
    return float(loss_sum) / len(x), int(correct) / len(x)


def _make_probe(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: Split, *, batch_size: int,
    steps: int, seed: int,
) -> Callable[[float], float]:
    """probe(α): train ``steps`` batches at initial_lr·α from a snapshot, return the loss on a
    held training batch, and restore everything (model, optimizer, RNG)."""
    gen = torch.Generator().manual_seed(seed + 7919)
    order = torch.randperm(len(data.train_x), generator=gen).to(data.train_x.device)
    batches = [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]
    held = order[steps * batch_size:(steps + 1) * batch_size]

    def probe(alpha: float) -> float:
        model_state = copy.deepcopy(model.state_dict())
        opt_state = copy.deepcopy(optimizer.state_dict())
        lrs = [g["lr"] for g in optimizer.param_groups]
        with torch.random.fork_rng(devices=[data.train_x.device] if data.train_x.is_cuda else []):
            model.train()
            for g in optimizer.param_groups:
                g["lr"] = g["initial_lr"] * alpha
            for idx in batches:
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(data.train_x[idx]), data.train_y[idx]).backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                loss = float(F.cross_entropy(model(data.train_x[held]), data.train_y[held]))
        model.load_state_dict(model_state)
        optimizer.load_state_dict(opt_state)
        for g, lr in zip(optimizer.param_groups, lrs, strict=True):
            g["lr"] = lr
        return loss if math.isfinite(loss) else float("inf")

    return probe


EpochHook = Callable[[EpochMetrics], None]
StepHook = Callable[[int, torch.Tensor], None]


def train(
    *, method: str, hyperparameters: Mapping[str, Any], data: Split, model_name: str = "mlp",
    seed: int = 42, device: torch.device | str = "cpu", on_epoch: Sequence[EpochHook] = (),
    on_step: Sequence[StepHook] = (), progress: bool = False, probe_steps: int = 3,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None, resume: Mapping[str, Any] | None = None,
    cache: TrajectoryCache | None = None,
) -> TrainResult:
    """Train ``model_name`` on ``data`` with ``method``'s schedule; ``hyperparameters`` must be
    resolved (see ``lrpo_study.hyperparameters.resolve``). ``data`` must already be on ``device``.

    Hooks run after each batch (``on_step(global_step, loss)``) and each epoch
    (``on_epoch(metrics)``); an exception raised by a hook stops training.
    ``on_checkpoint(state)`` receives, after each epoch, everything needed to
    continue identically (model, optimizer, schedule, RNG states, curves);
    ``resume=state`` continues from such a state. With ``cache``, schedules
    whose lr is constant per epoch start from the longest cached prefix of
    their trajectory and store the epochs they compute (``lrpo_study.cache``).
    """
    hp = dict(hyperparameters)
    device = torch.device(device)
    torch.manual_seed(seed)
    model = build_model(model_name).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"]
    )
    n, bs, epochs = len(data.train_x), hp["batch_size"], hp["epochs"]
    steps_per_epoch = math.ceil(n / bs)
    probe = _make_probe(model, optimizer, data, batch_size=min(bs, n // (probe_steps + 1) or 1), steps=probe_steps, seed=seed)
    schedule = make_schedule(
        method, optimizer, hp, total_steps=epochs * steps_per_epoch, params=model.parameters(),
        probe=probe, seed=seed,
    )
    result = TrainResult(method, hp, model_name, count_parameters(model), seed, str(device))
    perm_gen = torch.Generator(device=device).manual_seed(seed)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    state = _LoopState()
    if schedule.interval != "epoch":
        cache = None  # the lr moves within epochs: no per-epoch lr history to key on
    context = _cache_context(model_name, seed, device, hp, data) if cache is not None else {}
    if resume is not None:
        _restore(resume, model, optimizer, schedule, perm_gen, result, state)
    elif cache is not None:
        _resume_from_cache(cache, context, schedule, epochs, model, optimizer, perm_gen, result, state, sync)
        # Hooks see cached epochs as if computed, so early stopping decides the same with or without the cache.
        for e in range(1, state.epoch + 1):
            c = result.curves
            cached = EpochMetrics(e, c["train_loss"][e - 1], c["val_loss"][e - 1], c["val_accuracy"][e - 1], c["lr"][e - 1], c["seconds"][e - 1],
                                  {k: v[:e] for k, v in c.items()}, from_cache=True)
            for epoch_hook in on_epoch:
                epoch_hook(cached)
    bar = tqdm(total=epochs, initial=state.epoch, desc=method, unit="epoch", disable=not progress, leave=False)
    for epoch in range(state.epoch + 1, epochs + 1):
        model.train()
        state.lr_history.append(schedule.get_last_lr())
        start = time.perf_counter()
        perm = torch.randperm(n, device=device, generator=perm_gen)
        loss_sum = torch.zeros((), device=device)
        lr_sum = 0.0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            lr_sum += optimizer.param_groups[0]["lr"]
            loss = F.cross_entropy(model(data.train_x.index_select(0, idx)), data.train_y.index_select(0, idx))
            schedule.before_backward(loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(idx)
            state.step += 1
            if schedule.interval == "step":
                schedule.step(float(loss) if schedule.needs_loss else None)
            for hook in on_step:
                hook(state.step, loss)
        train_loss = float(loss_sum) / n
        sync()
        seconds = time.perf_counter() - start
        if not math.isfinite(train_loss):
            raise Diverged(epoch, f"train loss is {train_loss}")
        val_loss, val_acc = evaluate(model, data.val_x, data.val_y)
        if not math.isfinite(val_loss):
            raise Diverged(epoch, f"validation loss is {val_loss}")
        state.epoch = epoch
        state.train_seconds.append(seconds)
        for name, value in zip(CURVES, (train_loss, val_loss, val_acc, lr_sum / steps_per_epoch, seconds), strict=True):
            result.curves[name].append(value)
        if cache is not None:
            # Stored before the schedule's epoch step: a trial branching here takes that step itself.
            cache.put(trajectory_key(context, state.lr_history), _snapshot(model, optimizer, schedule, perm_gen, result, state))
        if schedule.interval == "epoch" and epoch < epochs:
            result.curves["seconds"][-1] += _timed_epoch_step(schedule, train_loss, val_loss, sync)
        metrics = EpochMetrics(epoch, train_loss, val_loss, val_acc, lr_sum / steps_per_epoch, result.curves["seconds"][-1], result.curves)
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.4f}", acc=f"{val_acc:.4f}")
        for epoch_hook in on_epoch:
            epoch_hook(metrics)
        if on_checkpoint is not None:
            on_checkpoint(_snapshot(model, optimizer, schedule, perm_gen, result, state))
    bar.close()
    result.extras["cached_epochs"] = state.cached_epochs
    if data.test_x is not None and data.test_y is not None:
        result.extras["test_loss"], result.extras["test_accuracy"] = evaluate(model, data.test_x, data.test_y)
    if isinstance(schedule, LRPO):
        result.extras.update(alpha=schedule.alpha, predictor_seconds=schedule.predictor_seconds)
        if schedule.probe_record:
            result.extras["probe"] = schedule.probe_record
    return result


@dataclass
class _LoopState:
    """What the loop carries between epochs besides model, optimizer and schedule."""

    epoch: int = 0
    step: int = 0
    lr_history: list[list[float]] = field(default_factory=list)  # every group's lr, per epoch
    train_seconds: list[float] = field(default_factory=list)  # per epoch, schedule steps excluded
    cached_epochs: int = 0


def _cache_context(model_name: str, seed: int, device: torch.device, hp: Mapping[str, Any], data: Split) -> dict[str, Any]:
    """Everything besides the lr history that decides the trajectory."""
    from . import __version__  # noqa: PLC0415

    fingerprint = [tuple(data.train_x.shape), tuple(data.val_x.shape), float(data.train_x.sum()), int(data.train_y.sum()), float(data.val_x.sum())]
    return {
        "model": model_name, "seed": seed, "device": device.type, "data": fingerprint, "torch": torch.__version__,
        "lrpo_study": __version__, **{k: hp[k] for k in ("batch_size", "momentum", "weight_decay")},
    }


def _resume_from_cache(
    cache: TrajectoryCache, context: dict[str, Any], schedule: LRSchedule, epochs: int, model: torch.nn.Module,
    optimizer: torch.optim.Optimizer, perm_gen: torch.Generator, result: TrainResult, state: _LoopState,
    sync: Callable[[], None],
) -> None:
    """Walk the schedule over cached epochs (each hit's losses give the next lr, hence the next
    key) and continue from the longest hit. A step that needs the model (LRPO's probe) is taken
    on the restored state of that epoch, then the walk goes on."""
    history: list[list[float]] = []
    entry: dict[str, Any] | None = None
    restored = 0
    own_steps: list[float] = []

    def restore(snapshot: dict[str, Any]) -> None:
        walked = schedule.state_dict()  # ours, not the schedule of the trial that computed the entry
        _restore(snapshot, model, optimizer, schedule, perm_gen, result, state)
        schedule.load_state_dict(walked)

    while len(history) < epochs:
        lrs = schedule.get_last_lr()
        hit = cache.get(trajectory_key(context, [*history, lrs]))
        if hit is None:
            break
        history.append(lrs)
        entry = hit
        if len(history) == epochs:
            break
        if not schedule.replay_safe(len(history)):
            restore(hit)
            restored = len(history)
        curves = hit["curves"]
        own_steps.append(_timed_epoch_step(schedule, curves["train_loss"][-1], curves["val_loss"][-1], sync))
    if entry is None:
        return
    hits = len(history)
    if restored != hits:
        restore(entry)
    # Honest cost: the training seconds measured when each epoch was computed, plus this
    # trial's own schedule steps (another trial's predictor overhead is not ours).
    own_steps += [0.0] * (hits - len(own_steps))
    result.curves["seconds"] = [t + s for t, s in zip(state.train_seconds, own_steps, strict=True)]
    state.cached_epochs = hits


def _timed_epoch_step(schedule: LRSchedule, train_loss: float, val_loss: float, sync: Callable[[], None]) -> float:
    start = time.perf_counter()
    _epoch_step(schedule, train_loss, val_loss)
    sync()
    return time.perf_counter() - start


def _epoch_step(schedule: LRSchedule, train_loss: float, val_loss: float) -> None:
    if not schedule.needs_loss:
        schedule.step()
    else:
        schedule.step(val_loss if schedule.monitor == "val_loss" else train_loss)


def _snapshot(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: LRSchedule, perm_gen: torch.Generator,
    result: TrainResult, state: _LoopState,
) -> dict[str, Any]:
    """Plain tensors and containers only, so ``torch.load(weights_only=True)`` reads it back."""
    return copy.deepcopy({
        "epoch": state.epoch, "step": state.step, "lr_history": state.lr_history, "train_seconds": state.train_seconds,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "perm_rng": perm_gen.get_state(), "curves": result.curves,
    })


def _restore(
    snapshot: Mapping[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    schedule: LRSchedule, perm_gen: torch.Generator, result: TrainResult, state: _LoopState,
) -> None:
    model.load_state_dict(snapshot["model"])
    optimizer.load_state_dict(snapshot["optimizer"])
    schedule.load_state_dict(copy.deepcopy(snapshot["schedule"]))
    torch.set_rng_state(snapshot["torch_rng"])
    if snapshot["cuda_rng"]:
        torch.cuda.set_rng_state_all(snapshot["cuda_rng"])
    perm_gen.set_state(snapshot["perm_rng"])
    result.curves = copy.deepcopy(dict(snapshot["curves"]))
    state.epoch, state.step = int(snapshot["epoch"]), int(snapshot["step"])
    state.lr_history = copy.deepcopy(list(snapshot["lr_history"]))
    state.train_seconds = list(snapshot["train_seconds"])
