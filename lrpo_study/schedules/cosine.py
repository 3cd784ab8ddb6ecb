"""Cosine annealing over the whole run, per batch (wraps torch's CosineAnnealingLR)."""

from __future__ import annotations

import math

import torch

from ._base import TorchWrapped
from ._params import Param


def cosine_lr(step: int, *, base_lr: float, total_steps: int, eta_min: float) -> float:
    """Pure reference for the lr used at ``step`` (0-based)."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * step / total_steps)) / 2


class CosineLR(TorchWrapped):
    PARAMS = {"eta_min": Param(float, 0.0, "final lr", low=0.0)}

    def __init__(self, optimizer: torch.optim.Optimizer, *, total_steps: int, eta_min: float = 0.0) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps=}")
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=eta_min)
        super().__init__(optimizer, scheduler, total_steps=total_steps + 1)
