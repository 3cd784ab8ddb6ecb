"""GreedyLR: speed up while the loss keeps improving, back off when it stalls.

The rule is the authors' implementation as merged into Hugging Face
transformers (``transformers.optimization.GreedyLR``, PR #44271); for every
parameter the two share, the lr after every ``step(metrics)`` is the same
(tests compare them). Each step:

1. the value is optionally smoothed (mean of the last ``window`` values);
2. while a cooldown or warmup counter runs, the step only counts it down and
   zeroes both counters: no comparison, ``best`` unchanged;
3. otherwise the value is compared with the best so far (``threshold``,
   ``threshold_mode``): better → ``num_good += 1, num_bad = 0``; else
   ``num_bad += 1, num_good = 0``;
4. ``num_good > patience``: lr = min(lr / F, max_lr), applied only if it rises
   by more than ``eps``, then ``warmup`` steps of pause;
   ``num_bad > patience``: lr = max(lr × F, min_lr), applied only if it falls
   by more than ``eps``, then ``cooldown`` steps of pause;
5. ``reset_start`` counts decreases made while every group already sits at
   ``min_lr`` (an increase re-arms the count); when it runs out: a full reset
   (initial lrs, best, counters, smoothing window).

Documented differences from transformers' defaults and edge cases:
``min_lr`` defaults to 1e-5 (theirs 1e-3 would pin small models' lr far too
high); ``reset_start = 0`` means never (theirs resets on the first decrease at
``min_lr``; ours defaults to 0); the smoothing window is recomputed from its
values, so one NaN loss leaves it after ``window`` steps instead of poisoning
a running sum forever; only mode "min" (losses).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

import torch

from ._base import MetricSchedule
from ._params import MAX_STEPS, Param


class GreedyLR(MetricSchedule):
    PARAMS = {
        "factor": Param(float, 0.95, "F: lr × F on stall, lr / F on improvement", low=0, high=1, low_open=True, high_open=True),
        "patience": Param(int, 10, "steps of improvement/stall before acting", low=0, high=MAX_STEPS),
        "threshold": Param(float, 1e-6, "minimal improvement that counts", low=0.0),
        "threshold_mode": Param(str, "abs", "abs: loss < best - t; rel: loss < best·(1 - t)", choices=("abs", "rel")),
        "cooldown": Param(int, 0, "steps of pause after a decrease", low=0, high=MAX_STEPS),
        "warmup": Param(int, 0, "steps of pause after an increase", low=0, high=MAX_STEPS),
        "min_lr": Param(float, 1e-5, "lower lr bound", low=0.0, low_open=True, high=1e3),
        "max_lr": Param(float, 1.0, "upper lr bound", low=0.0, low_open=True, high=1e3),
        "eps": Param(float, 1e-8, "ignore lr changes smaller than this", low=0.0),
        "smooth": Param(bool, False, "compare the mean of the last `window` losses"),
        "window": Param(int, 50, "smoothing window", low=1, high=MAX_STEPS),
        "reset_start": Param(int, 0, "full reset after N decreases at min_lr (0: never)", low=0, high=MAX_STEPS),
        "interval": Param(str, "epoch", "step per batch (train loss) or per epoch (validation loss)", choices=("step", "epoch")),
    }

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, factor: float = 0.95, patience: int = 10,
        threshold: float = 1e-6, threshold_mode: Literal["abs", "rel"] = "abs", cooldown: int = 0,
        warmup: int = 0, min_lr: float = 1e-5, max_lr: float = 1.0, eps: float = 1e-8,
        smooth: bool = False, window: int = 50, reset_start: int = 0,
        interval: Literal["step", "epoch"] = "epoch",
    ) -> None:
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor=}")
        if min_lr > max_lr:
            raise ValueError(f"min_lr must be <= max_lr, got {min_lr=} {max_lr=}")
        super().__init__(optimizer)
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
        self.interval = interval
        self.monitor = "train_loss" if interval == "step" else "val_loss"
        self._reset()

    def _reset(self) -> None:
        self._set_lrs([float(lr) for lr in self.base_lrs])
        self.best = float("inf")
        self.num_good = 0
        self.num_bad = 0
        self.cooldown_counter = 0
        self.warmup_counter = 0
        self.resets_left = self.reset_start
        self.recent: deque[float] = deque(maxlen=self.window)

    def _improves(self, value: float) -> bool:
        if self.threshold_mode == "rel":
            return value < self.best * (1.0 - self.threshold)
        return value < self.best - self.threshold

    def _update(self, value: float) -> None:
        if self.smooth:
            self.recent.append(value)
            value = sum(self.recent) / len(self.recent)
        if self.cooldown_counter > 0 or self.warmup_counter > 0:
            if self.cooldown_counter > 0:
                self.cooldown_counter -= 1
            else:
                self.warmup_counter -= 1
            self.num_good = self.num_bad = 0
            return
        if self._improves(value):
            self.best = value
            self.num_good += 1
            self.num_bad = 0
        else:
            self.num_bad += 1
            self.num_good = 0
        if self.num_good > self.patience:
            self._increase()
            self.warmup_counter = self.warmup
            self.num_good = 0
        elif self.num_bad > self.patience:
            self._decrease()  # may reset fully; the pause starts after it either way, as in transformers
            self.cooldown_counter = self.cooldown
            self.num_bad = 0

    def _increase(self) -> None:
        for group in self.optimizer.param_groups:
            new = min(float(group["lr"]) / self.factor, self.max_lr)
            if new - float(group["lr"]) > self.eps:
                group["lr"] = new
        self.resets_left = self.reset_start

    def _decrease(self) -> None:
        for group in self.optimizer.param_groups:
            new = max(float(group["lr"]) * self.factor, self.min_lr)
            if float(group["lr"]) - new > self.eps:
                group["lr"] = new
        if self.reset_start and all(float(g["lr"]) <= self.min_lr for g in self.optimizer.param_groups):
            self.resets_left -= 1
            if self.resets_left <= 0:
                self._reset()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["recent"] = list(self.recent)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        recent = state.pop("recent")
        super().load_state_dict(state)
        self.recent = deque(recent, maxlen=self.window)
