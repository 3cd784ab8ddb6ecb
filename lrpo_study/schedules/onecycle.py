"""One-cycle policy, per batch: torch's OneCycleLR with the optimizer's lr as the peak."""

from __future__ import annotations

import math

import torch

from ._base import StepSchedule
from ._params import Param


def onecycle_lr(
    step: int, *, max_lr: float, total_steps: int, pct_start: float, div_factor: float,
    final_div_factor: float,
) -> float:
    """Pure reference for torch's two-phase cosine one-cycle lr at ``step`` (0-based)."""
    initial = max_lr / div_factor
    final = initial / final_div_factor
    peak_step = float(pct_start * total_steps) - 1
    if step <= peak_step:
        start, end, pct = initial, max_lr, step / peak_step
    else:
        start, end, pct = max_lr, final, (step - peak_step) / (total_steps - 1 - peak_step)
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


class OneCycleLR(StepSchedule, torch.optim.lr_scheduler.OneCycleLR):
    """torch's ``OneCycleLR`` (cosine annealing) whose peak is each group's lr when built."""

    interval = "step"
    length_dependent = True
    PARAMS = {
        "pct_start": Param(float, 0.3, "fraction of steps spent warming up", low=0, high=1, low_open=True, high_open=True),
        "div_factor": Param(float, 25.0, "initial lr = peak / div_factor", low=1.0),
        "final_div_factor": Param(float, 1e4, "final lr = initial / final_div_factor", low=1.0),
        "cycle_momentum": Param(bool, True, "cycle SGD momentum inversely to the lr"),
    }

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, total_steps: int, pct_start: float = 0.3,
        div_factor: float = 25.0, final_div_factor: float = 1e4, cycle_momentum: bool = True,
    ) -> None:
        if total_steps < 2:
            raise ValueError(f"total_steps must be >= 2 for one-cycle, got {total_steps=}")
        torch.optim.lr_scheduler.OneCycleLR.__init__(
            self, optimizer, max_lr=[g.get("initial_lr", g["lr"]) for g in optimizer.param_groups],
            total_steps=total_steps, pct_start=pct_start, div_factor=div_factor,
            final_div_factor=final_div_factor, anneal_strategy="cos", cycle_momentum=cycle_momentum,
        )
