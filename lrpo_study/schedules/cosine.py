"""Cosine annealing over the whole run, per batch, from each group's initial lr to ``eta_min``."""

from __future__ import annotations

import math

import torch

from ._base import StepSchedule
from ._params import Param


def cosine_lr(step: int, *, base_lr: float, total_steps: int, eta_min: float) -> float:
    """Pure reference for the lr used at ``step`` (0-based); ``eta_min`` past the end."""
    progress = min(step, total_steps) / total_steps
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * progress)) / 2


class CosineLR(StepSchedule):
    interval = "step"
    length_dependent = True
    PARAMS = {"eta_min": Param(float, 0.0, "final lr", low=0.0, high=1e3)}

    def __init__(self, optimizer: torch.optim.Optimizer, *, total_steps: int, eta_min: float = 0.0) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps=}")
        self.total_steps = total_steps
        self.eta_min = eta_min
        super().__init__(optimizer)

    def get_lr(self) -> list[float | torch.Tensor]:
        return [
            cosine_lr(self.last_epoch, base_lr=float(base), total_steps=self.total_steps, eta_min=self.eta_min)
            for base in self.base_lrs
        ]
