"""Piecewise-constant lr, per batch: ``lrs[i]`` for the i-th piece of ``piece_epochs`` epochs, the last
one after the end. It is what population-based training discovers (method ``pbt``: one piece per
generation, the winner's lineage), so an exported PBT schedule replays in any loop.

The lrs are those of a param group whose initial lr is the first group's; other groups keep their
ratio to it (a head trained at 10× keeps 10×).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._base import StepSchedule
from ._params import MAX_EPOCHS, Param


def piecewise_lr(step: int, *, lrs: Sequence[float], piece_steps: int) -> float:
    """Pure reference for the lr used at ``step`` (0-based)."""
    return float(lrs[min(step // piece_steps, len(lrs) - 1)])


class PiecewiseLR(StepSchedule):
    interval = "step"
    PARAMS = {
        "lrs": Param(list, [0.05], "the lr of each piece, in order (the last one holds after the end)",
                     low=0.0, low_open=True, high=1e3),
        "piece_epochs": Param(int, 1, "epochs per piece (a PBT generation)", low=1, high=MAX_EPOCHS),
    }

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, steps_per_epoch: int, lrs: Sequence[float] = (0.05,), piece_epochs: int = 1,
    ) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch=}")
        if not lrs or any(not lr > 0 for lr in lrs):
            raise ValueError(f"lrs must be a non-empty list of positive numbers, got {lrs=}")
        if piece_epochs < 1:
            raise ValueError(f"piece_epochs must be >= 1, got {piece_epochs=}")
        self.lrs = [float(lr) for lr in lrs]
        self.piece_epochs = piece_epochs
        self.steps_per_epoch = steps_per_epoch
        super().__init__(optimizer)

    def get_lr(self) -> list[float | torch.Tensor]:
        lr = piecewise_lr(self.last_epoch, lrs=self.lrs, piece_steps=self.piece_epochs * self.steps_per_epoch)
        first = float(self.base_lrs[0])
        return [lr * (float(base) / first) for base in self.base_lrs]  # the first group: lr exactly
