"""One-cycle policy, per batch: the optimizer's lr is the peak (torch's OneCycleLR rule, cosine).

Written out rather than wrapped: torch's class rewrites each group's ``initial_lr``
(to peak / div_factor), so the next schedule built on the same optimizer would
start from the wrong lr. A test compares this class with torch's step by step.
"""

from __future__ import annotations

import math

import torch

from ._base import StepSchedule
from ._params import Param

BASE_MOMENTUM, MAX_MOMENTUM = 0.85, 0.95  # torch's defaults


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def _phase(step: int, *, total_steps: int, pct_start: float) -> tuple[int, float]:
    """(0: warm-up, 1: annealing) and the fraction of that phase done at ``step``."""
    peak_step = float(pct_start * total_steps) - 1
    if step <= peak_step:
        return 0, step / peak_step
    return 1, (step - peak_step) / (total_steps - 1 - peak_step)


def onecycle_lr(
    step: int, *, max_lr: float, total_steps: int, pct_start: float, div_factor: float, final_div_factor: float,
) -> float:
    """Pure reference for the lr at ``step`` (0-based)."""
    initial = max_lr / div_factor
    phase, pct = _phase(step, total_steps=total_steps, pct_start=pct_start)
    return _cos(initial, max_lr, pct) if phase == 0 else _cos(max_lr, initial / final_div_factor, pct)


def onecycle_momentum(step: int, *, total_steps: int, pct_start: float) -> float:
    """Pure reference for the momentum (SGD) or β1 (Adam) at ``step``: it moves against the lr."""
    phase, pct = _phase(step, total_steps=total_steps, pct_start=pct_start)
    return _cos(MAX_MOMENTUM, BASE_MOMENTUM, pct) if phase == 0 else _cos(BASE_MOMENTUM, MAX_MOMENTUM, pct)


class OneCycleLR(StepSchedule):
    interval = "step"
    length_dependent = True
    PARAMS = {
        "pct_start": Param(float, 0.3, "fraction of steps spent warming up", low=0, high=1, low_open=True, high_open=True),
        "div_factor": Param(float, 25.0, "initial lr = peak / div_factor", low=1.0),
        "final_div_factor": Param(float, 1e4, "final lr = initial / final_div_factor", low=1.0),
        "cycle_momentum": Param(bool, True, "cycle SGD momentum (Adam's β1) inversely to the lr"),
    }

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, total_steps: int, pct_start: float = 0.3,
        div_factor: float = 25.0, final_div_factor: float = 1e4, cycle_momentum: bool = True,
    ) -> None:
        if total_steps < 2:
            raise ValueError(f"total_steps must be >= 2 for one-cycle, got {total_steps=}")
        if cycle_momentum and not all("momentum" in g or "betas" in g for g in optimizer.param_groups):
            raise ValueError("cycle_momentum=True needs an optimizer with momentum or betas")
        self.total_steps = total_steps
        self.pct_start = pct_start
        self.div_factor = div_factor
        self.final_div_factor = final_div_factor
        self.cycle_momentum = cycle_momentum
        super().__init__(optimizer)

    def get_lr(self) -> list[float | torch.Tensor]:
        step = min(self.last_epoch, self.total_steps - 1)  # past the end: the final lr stays
        if self.cycle_momentum:
            momentum = onecycle_momentum(step, total_steps=self.total_steps, pct_start=self.pct_start)
            for group in self.optimizer.param_groups:
                if "betas" in group:
                    group["betas"] = (momentum, *group["betas"][1:])
                else:
                    group["momentum"] = momentum
        return [
            onecycle_lr(step, max_lr=float(base), total_steps=self.total_steps, pct_start=self.pct_start,
                        div_factor=self.div_factor, final_div_factor=self.final_div_factor)
            for base in self.base_lrs
        ]
