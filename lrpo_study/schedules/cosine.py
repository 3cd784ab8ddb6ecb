"""Cosine annealing over the whole run, per batch (wraps torch's CosineAnnealingLR)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ._base import LRSchedule
from ._params import Param


def cosine_lr(step: int, *, base_lr: float, total_steps: int, eta_min: float) -> float:
    """Pure reference for the lr used at ``step`` (0-based)."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * step / total_steps)) / 2


class CosineLR(LRSchedule):
    interval = "step"
    PARAMS = {"eta_min": Param(float, 0.0, "final lr", low=0.0)}

    def __init__(self, optimizer: torch.optim.Optimizer, *, total_steps: int, eta_min: float = 0.0) -> None:
        super().__init__(optimizer)
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps=}")
        self._torch = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=total_steps, eta_min=eta_min
        )

    def step(self, loss: float | None = None) -> None:
        self.last_step += 1
        self._torch.step()

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "torch": self._torch.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = state["last_step"]
        self._torch.load_state_dict(state["torch"])
        self._set_lrs(list(self._torch.get_last_lr()))
