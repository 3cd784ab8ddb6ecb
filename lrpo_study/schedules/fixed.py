"""Fixed learning rate: the paper's baseline."""

from __future__ import annotations

from ._base import LRSchedule


def fixed_lr(step: int, *, base_lr: float) -> float:
    """Pure reference: the lr at any step is the base lr."""
    return base_lr


class FixedLR(LRSchedule):
    interval = "epoch"

    def step(self, loss: float | None = None) -> None:
        self.last_step += 1

    def _apply_current(self) -> None:
        self._scale_base(1.0)
