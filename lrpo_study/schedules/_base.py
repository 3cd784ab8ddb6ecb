"""What every schedule shares: the contract the training loop relies on."""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal

import torch

from ._params import Param


class LRSchedule:
    """Base class: a schedule scales each param group's initial lr.

    The loop calls, for every batch, ``before_backward(loss)`` (only schedules
    that read the loss graph act on it), and ``step(...)`` once per
    ``interval`` ("step" = per batch, "epoch" = per epoch). Schedules whose
    ``needs_loss`` is true take the monitored loss in ``step(loss)``;
    ``monitor`` says which loss the loop hands over at epoch ends.
    """

    interval: ClassVar[Literal["step", "epoch"]] = "epoch"
    needs_loss: ClassVar[bool] = False
    monitor: Literal["train_loss", "val_loss"] = "train_loss"
    PARAMS: ClassVar[dict[str, Param]] = {}
    # Whether the lr at epoch e depends on how long the run is planned to be (annealing, phases).
    length_dependent: ClassVar[bool] = False
    # Live objects the schedule holds but does not own; never part of its state.
    _NOT_STATE: ClassVar[tuple[str, ...]] = ("optimizer", "probe", "params", "generator", "_torch")

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs: list[float] = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_step = 0

    def before_backward(self, loss: torch.Tensor) -> None:
        """Hook between forward and backward; the loss graph is still alive."""

    def step(self, loss: float | None = None) -> None:
        raise NotImplementedError

    def replay_safe(self, epoch: int) -> bool:
        """Whether the step after ``epoch`` may be replayed from recorded losses alone
        (without the model in its state at that epoch); the trajectory cache relies on it."""
        return True

    def extras(self) -> dict[str, Any]:
        """What this schedule decided that a run's record should keep (LRPO: its α)."""
        return {}

    def get_last_lr(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def _set_lrs(self, lrs: list[float]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr

    def _scale_base(self, factor: float) -> None:
        self._set_lrs([base * factor for base in self.base_lrs])

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy(
            {key: value for key, value in self.__dict__.items() if key not in self._NOT_STATE}
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._apply_current()

    def _apply_current(self) -> None:
        """Write the lr that the restored state implies into the optimizer."""


class TorchWrapped(LRSchedule):
    """A per-batch schedule that delegates to one of torch's ``lr_scheduler`` classes."""

    interval = "step"
    length_dependent = True

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: Any, *, total_steps: int) -> None:
        super().__init__(optimizer)
        self._torch = scheduler
        self.total_steps = total_steps

    def step(self, loss: float | None = None) -> None:
        self.last_step += 1
        # torch's one-cycle raises past its last step; a user's extra step is a no-op instead.
        if self.last_step < self.total_steps:
            self._torch.step()

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "torch": self._torch.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = state["last_step"]
        self._torch.load_state_dict(state["torch"])
        self._set_lrs(list(self._torch.get_last_lr()))
