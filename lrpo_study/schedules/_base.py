"""What every schedule shares: torch's scheduler protocol, plus the two hooks a plain loop calls.

Two kinds of schedule, both objects of ``torch.optim.lr_scheduler``:

- ``StepSchedule`` (an ``LRScheduler``): the lr is a function of the step count
  (``get_lr`` reads ``last_epoch``); ``step()`` takes no value.
- ``MetricSchedule``: the lr follows a monitored value, taken as ``step(metrics)``
  like ``ReduceLROnPlateau``. It subclasses ``ReduceLROnPlateau`` for one reason:
  that is how PyTorch Lightning and the Hugging Face Trainer recognise a
  value-driven scheduler (they step it with the monitored metric instead of
  after every batch). It shares none of that class's rule.

Every schedule documents ``interval`` ("step": after every optimizer step,
"epoch": once per epoch) and ``monitor`` (None, "train_loss" or "val_loss").
A plain loop needs no special cases: it calls ``observe(loss)`` between
forward and backward (the curvature schedule reads the loss graph there;
train-loss monitors record the value), ``batch_end()`` after
``optimizer.step()``, and ``epoch_end(val_loss=...)`` after evaluating; each
steps the schedule only when its interval has come, with its monitored value.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal, SupportsFloat

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from ._params import Param

Interval = Literal["step", "epoch"]
Monitor = Literal["train_loss", "val_loss"]


class ScheduleHooks:
    """The loop-facing half shared by both kinds (a mixin; the torch class supplies the rest)."""

    interval: Interval = "epoch"
    monitor: Monitor | None = None
    PARAMS: ClassVar[dict[str, Param]] = {}
    # Whether the lr at epoch e depends on how long the run is planned to be (annealing, phases).
    length_dependent: ClassVar[bool] = False
    # Hyperparameters that change what a run computes (besides epochs and batch size): extra work per step
    # or per epoch, or the run's length; a study searching none of them costs every trial the same.
    COST_PARAMS: ClassVar[frozenset[str]] = frozenset()
    # Live objects and per-batch scratch a schedule holds but that are not its state.
    _NOT_STATE: ClassVar[frozenset[str]] = frozenset(
        {"optimizer", "probe", "counter", "params", "generator", "_loss_sum", "_loss_count"}
    )
    # The run length the settings were tuned for; ``load_schedule`` sets it (None when built directly).
    epochs: int | None = None
    optimizer: torch.optim.Optimizer
    _loss_sum: torch.Tensor | None = None
    _loss_count: int = 0

    def observe(self, loss: torch.Tensor) -> None:
        """Call between forward and backward with the batch loss (its graph still alive)."""
        if self.monitor == "train_loss":
            detached = loss.detach()
            self._loss_sum = detached if self._loss_sum is None else self._loss_sum + detached
            self._loss_count += 1

    def step_phase(self) -> object:
        """What sets this step's work apart from another step's, for counting its FLOPs (the curvature
        schedule: whether it estimates tr(H) at this step); a plain schedule adds no work: None."""
        return None

    def batch_end(self) -> None:
        """Call after ``optimizer.step()``: steps a per-step schedule."""
        if self.interval == "step":
            self.step()

    def epoch_end(self, *, val_loss: float | None = None, train_loss: float | None = None) -> None:
        """Call once per epoch after evaluating: steps a per-epoch schedule with its monitored
        value (``train_loss`` defaults to the mean of the batch losses observed this epoch)."""
        if self.interval != "epoch":
            return
        if self.monitor is None:
            self.step()
        else:
            self.step(val_loss if self.monitor == "val_loss" else train_loss)

    def step(self, metrics: SupportsFloat | None = None) -> None:
        raise NotImplementedError

    def _observed_mean(self) -> float | None:
        """The mean of the losses observed since the last step (and forget them)."""
        if self._loss_sum is None:
            return None
        mean = float(self._loss_sum) / self._loss_count
        self._loss_sum, self._loss_count = None, 0
        return mean

    def replay_safe(self, epoch: int) -> bool:
        """Whether the step after ``epoch`` may be replayed from recorded losses alone
        (without the model in its state at that epoch); the trajectory cache relies on it."""
        return True

    def extras(self) -> dict[str, Any]:
        """What this schedule decided that a run's record should keep (LRPO: its α)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k not in self._NOT_STATE})

    # Hyperparameters that are decided while running, so they are state (LRPO's α).
    _STATE_PARAMS: ClassVar[frozenset[str]] = frozenset()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load what a run changes; this schedule's own settings (its hyperparameters, interval
        and monitor) stay as built."""
        settings = (set(type(self).PARAMS) | {"interval", "monitor", "epochs"}) - self._STATE_PARAMS
        self.__dict__.update({k: v for k, v in state_dict.items() if k not in self._NOT_STATE and k not in settings})


class StepSchedule(ScheduleHooks, LRScheduler):
    """A schedule whose lr is a function of the step count: subclasses implement ``get_lr``."""

    # Every group setting it changes (lr, momentum) is a function of the step count and the
    # hyperparameters alone, so the settings of every step are known before training (the
    # trajectory cache keys on them). Not so for curvature, which reads the loss.
    step_function: ClassVar[bool] = True

    def step(self, metrics: SupportsFloat | None = None) -> None:  # type: ignore[override]
        if metrics is not None:  # torch would read it as the deprecated ``epoch`` argument
            raise TypeError(f"{type(self).__name__} is a function of the step: call step() without a value")
        LRScheduler.step(self)


class MetricSchedule(ScheduleHooks, ReduceLROnPlateau):
    """A schedule driven by a monitored value: ``step(metrics)``.

    ``ReduceLROnPlateau.__init__`` is deliberately not called (its rule and
    arguments are not ours); this sets the public attributes torch's protocol
    reads (``optimizer``, ``base_lrs``, ``last_epoch``) and answers
    ``get_last_lr()`` itself.
    """

    monitor: Monitor | None = "train_loss"

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_epoch = 0
        self.lrs: list[float] = []  # the lr of each param group this schedule set last
        self._set_lrs([float(lr) for lr in self.base_lrs])

    def step(self, metrics: SupportsFloat | None = None, epoch: None = None) -> None:  # type: ignore[override]
        if epoch is not None:
            raise TypeError(f"{type(self).__name__}.step takes no epoch; it counts its own steps")
        value = self._observed_mean() if metrics is None and self.monitor == "train_loss" else metrics
        if value is None:
            raise ValueError(
                f"{type(self).__name__} monitors {self.monitor}: call step({self.monitor}) "
                f"(or epoch_end({self.monitor}=...))"
            )
        self._loss_sum, self._loss_count = None, 0
        self.last_epoch += 1
        self._update(float(value))
        self.lrs = [float(g["lr"]) for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:  # type: ignore[override]
        return list(self.lrs)

    def _update(self, value: float) -> None:
        raise NotImplementedError

    def _set_lrs(self, lrs: list[float]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self.lrs = [*lrs]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        ScheduleHooks.load_state_dict(self, state_dict)
        self._set_lrs([float(lr) for lr in self.lrs])
