"""Fixed learning rate: the paper's baseline."""

from __future__ import annotations

import torch

from ._base import StepSchedule


def fixed_lr(step: int, *, base_lr: float) -> float:
    """Pure reference: the lr at any step is the base lr."""
    return base_lr


class FixedLR(StepSchedule):
    """Every param group keeps its initial lr. Stepping it per batch or per epoch is the same."""

    interval = "epoch"

    def get_lr(self) -> list[float | torch.Tensor]:
        return [fixed_lr(self.last_epoch, base_lr=float(base)) for base in self.base_lrs]
