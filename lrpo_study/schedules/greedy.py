"""GreedyLR: speed up while the loss keeps improving, back off when it stalls.

Rule (the paper, and the scheduler proposed to Hugging Face transformers):
each ``step(loss)`` compares the (optionally smoothed) loss with the best seen
so far. Better by more than ``threshold`` → ``num_good += 1, num_bad = 0``;
otherwise ``num_bad += 1, num_good = 0``. When ``num_good > patience`` the lr
is divided by ``factor`` (F in (0, 1), so it grows), then ``warmup`` steps pass
in which good steps are not counted. When ``num_bad > patience`` the lr is
multiplied by F, then ``cooldown`` steps pass in which bad steps are not
counted. The lr stays in ``[min_lr, max_lr]``; a change smaller than ``eps`` is
skipped. ``reset_start > 0`` puts the lr back to its initial value every
``reset_start`` steps.

``min_lr`` defaults to 1e-5 here, not the PR's 1e-3, which would pin small
models' fine-tuning lr far too high.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

import torch

from ._base import LRSchedule
from ._params import Param


class GreedyLR(LRSchedule):
    needs_loss = True
    PARAMS = {
        "factor": Param(float, 0.95, "F: lr × F on stall, lr / F on improvement", low=0, high=1, low_open=True, high_open=True),
        "patience": Param(int, 10, "steps of improvement/stall before acting", low=0),
        "threshold": Param(float, 1e-6, "minimal improvement that counts", low=0.0),
        "threshold_mode": Param(str, "abs", "abs: loss < best - t; rel: loss < best·(1 - t)", choices=("abs", "rel")),
        "cooldown": Param(int, 0, "steps after a decrease in which stalls are not counted", low=0),
        "warmup": Param(int, 0, "steps after an increase in which improvements are not counted", low=0),
        "min_lr": Param(float, 1e-5, "lower lr bound", low=0.0, low_open=True),
        "max_lr": Param(float, 1.0, "upper lr bound", low=0.0, low_open=True),
        "eps": Param(float, 1e-8, "ignore lr changes smaller than this", low=0.0),
        "smooth": Param(bool, False, "compare the mean of the last `window` losses"),
        "window": Param(int, 50, "smoothing window", low=1),
        "reset_start": Param(int, 0, "reset lr to its initial value every N steps (0: never)", low=0),
        "interval": Param(str, "epoch", "step per batch (train loss) or per epoch", choices=("step", "epoch")),
    }

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, factor: float = 0.95, patience: int = 10,
        threshold: float = 1e-6, threshold_mode: Literal["abs", "rel"] = "abs", cooldown: int = 0,
        warmup: int = 0, min_lr: float = 1e-5, max_lr: float = 1.0, eps: float = 1e-8,
        smooth: bool = False, window: int = 50, reset_start: int = 0,
        interval: Literal["step", "epoch"] = "epoch",
    ) -> None:
        super().__init__(optimizer)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor=}")
        if min_lr > max_lr:
            raise ValueError(f"min_lr must be <= max_lr, got {min_lr=} {max_lr=}")
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.cooldown = cooldown
        self.warmup = warmup
        self.min_lr = min_lr
        self.max_lr = max_lr
        self.eps = eps
        self.smooth = smooth
        self.window = window
        self.reset_start = reset_start
        # An instance attribute: the loop reads it to know when to call step().
        self.interval = interval  # type: ignore[misc]
        self.monitor = "train_loss" if interval == "step" else "val_loss"
        self.best = float("inf")
        self.num_good = 0
        self.num_bad = 0
        self.cooldown_counter = 0
        self.warmup_counter = 0
        self.recent: deque[float] = deque(maxlen=window)
        self.lrs = list(self.base_lrs)
        self._set_lrs(self.lrs)

    def _is_better(self, value: float) -> bool:
        if self.threshold_mode == "rel":
            return value < self.best * (1.0 - self.threshold)
        return value < self.best - self.threshold

    def step(self, loss: float | None = None) -> None:
        if loss is None:
            raise ValueError("GreedyLR.step needs the loss: call step(loss)")
        self.last_step += 1
        value = float(loss)
        if self.smooth:
            self.recent.append(value)
            value = sum(self.recent) / len(self.recent)
        if self.reset_start and self.last_step % self.reset_start == 0:
            self.lrs = list(self.base_lrs)
            self.num_good = self.num_bad = self.cooldown_counter = self.warmup_counter = 0
        if self._is_better(value):
            self.best = value
            self.num_good += 1
            self.num_bad = 0
        else:
            self.num_bad += 1
            self.num_good = 0
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0
        if self.warmup_counter > 0:
            self.warmup_counter -= 1
            self.num_good = 0
        if self.num_bad > self.patience:
            self.lrs = [self._bounded(lr, lr * self.factor) for lr in self.lrs]
            self.cooldown_counter = self.cooldown
            self.num_bad = 0
        elif self.num_good > self.patience:
            self.lrs = [self._bounded(lr, lr / self.factor) for lr in self.lrs]
            self.warmup_counter = self.warmup
            self.num_good = 0
        self._set_lrs(self.lrs)

    def _bounded(self, old: float, new: float) -> float:
        new = min(max(new, self.min_lr), self.max_lr)
        return new if abs(old - new) > self.eps else old

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["recent"] = list(self.recent)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        recent = state.pop("recent")
        super().load_state_dict(state)
        self.recent = deque(recent, maxlen=self.window)

    def _apply_current(self) -> None:
        self._set_lrs(self.lrs)
