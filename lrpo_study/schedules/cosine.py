"""Cosine annealing over the whole run, per batch, from each group's initial lr to ``eta_min``,
after an optional linear warm-up: nanoGPT's ``get_lr`` exactly."""

from __future__ import annotations

import math

import torch

from ._base import StepSchedule
from ._params import MAX_STEPS, Param


def cosine_lr(step: int, *, base_lr: float, total_steps: int, eta_min: float, warmup_steps: int = 0) -> float:
    """Pure reference for the lr used at ``step`` (0-based): base·(step+1)/(warmup+1) while warming
    up, then cosine from base to ``eta_min`` over the remaining steps; ``eta_min`` past the end."""
    if step < warmup_steps:
        return base_lr * (step + 1) / (warmup_steps + 1)
    if step > total_steps:
        return eta_min
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * progress)) / 2


class CosineLR(StepSchedule):
    interval = "step"
    length_dependent = True
    PARAMS = {
        "eta_min": Param(float, 0.0, "final lr", low=0.0, high=1e3),
        "warmup_steps": Param(int, 0, "linear warm-up steps (batches) before the cosine", low=0, high=MAX_STEPS),
    }

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, total_steps: int, eta_min: float = 0.0, warmup_steps: int = 0,
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps=}")
        if warmup_steps >= total_steps:
            raise ValueError(f"warmup_steps must be < total_steps, got {warmup_steps=} {total_steps=}")
        self.total_steps = total_steps
        self.eta_min = eta_min
        self.warmup_steps = warmup_steps
        super().__init__(optimizer)

    def get_lr(self) -> list[float | torch.Tensor]:
        return [
            cosine_lr(self.last_epoch, base_lr=float(base), total_steps=self.total_steps, eta_min=self.eta_min,
                      warmup_steps=self.warmup_steps)
            for base in self.base_lrs
        ]
