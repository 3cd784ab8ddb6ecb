"""Warmup-stable-decay ("trapezoidal"): a linear warm-up, a long constant phase, then a short decay
to a floor, per batch: transformers' ``get_wsd_schedule`` (linear warm-up) exactly.

Every WSD run is the same run until its decay starts, so one trunk can be cooled down at several
lengths: the trajectory cache keys step schedules by the lr of every step so far, and a shorter
run branches from a longer one's trunk.
"""

from __future__ import annotations

import math

import torch

from ._base import StepSchedule
from ._params import MAX_STEPS, Param

DECAY_SHAPES = ("linear", "cosine", "1-sqrt")


def decay_steps_of(total_steps: int, *, decay_fraction: float, decay_steps: int = 0) -> int:
    """The decay's length: ``decay_steps`` when given (> 0), else ``decay_fraction`` of the run (at least one step)."""
    return min(total_steps, decay_steps) if decay_steps > 0 else max(1, round(decay_fraction * total_steps))


def wsd_lr(
    step: int, *, base_lr: float, total_steps: int, warmup_steps: int, decay_steps: int, decay_shape: str,
    min_lr_ratio: float = 0.0,
) -> float:
    """Pure reference for the lr used at ``step`` (0-based), as transformers' ``_get_wsd_scheduler_lambda``:
    warm-up from ``min_lr_ratio``·base to base, base until the decay, then decay to ``min_lr_ratio``·base."""
    stable_end = total_steps - decay_steps
    if step < warmup_steps:
        factor = step / max(1, warmup_steps)
    elif step < stable_end:
        return base_lr
    elif step < total_steps:
        progress = (step - stable_end) / max(1, decay_steps)
        if decay_shape == "linear":
            factor = 1.0 - progress
        elif decay_shape == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            factor = 1.0 - math.sqrt(progress)
    else:
        return base_lr * min_lr_ratio
    return base_lr * max(0.0, factor * (1.0 - min_lr_ratio) + min_lr_ratio)


class WSDLR(StepSchedule):
    interval = "step"
    length_dependent = True  # when the decay starts depends on the planned length
    PARAMS = {
        "warmup_steps": Param(int, 0, "linear warm-up steps (batches)", low=0, high=MAX_STEPS),
        "decay_fraction": Param(float, 0.2, "the decay's share of the run (unless decay_steps is given)",
                                low=0.0, high=1.0, low_open=True),
        "decay_steps": Param(int, 0, "the decay's length in steps (0: decay_fraction of the run)", low=0, high=MAX_STEPS),
        "decay_shape": Param(str, "1-sqrt", "how the lr falls in the decay", choices=DECAY_SHAPES),
        "min_lr_ratio": Param(float, 0.0, "the floor, as a fraction of the peak lr", low=0.0, high=1.0, high_open=True),
    }

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int = 0, decay_fraction: float = 0.2,
        decay_steps: int = 0, decay_shape: str = "1-sqrt", min_lr_ratio: float = 0.0,
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps=}")
        if decay_shape not in DECAY_SHAPES:
            raise ValueError(f"decay_shape must be one of {', '.join(DECAY_SHAPES)}, got {decay_shape=}")
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.decay_fraction = decay_fraction
        self.decay_steps = decay_steps
        self.decay_shape = decay_shape
        self.min_lr_ratio = min_lr_ratio
        self.decay_length = decay_steps_of(total_steps, decay_fraction=decay_fraction, decay_steps=decay_steps)
        if warmup_steps + self.decay_length > total_steps:
            raise ValueError(
                f"warm-up and decay must fit the run, got warmup_steps={warmup_steps} + decay of {self.decay_length} "
                f"steps > total_steps={total_steps}"
            )
        super().__init__(optimizer)

    def get_lr(self) -> list[float | torch.Tensor]:
        return [
            wsd_lr(self.last_epoch, base_lr=float(base), total_steps=self.total_steps, warmup_steps=self.warmup_steps,
                   decay_steps=self.decay_length, decay_shape=self.decay_shape, min_lr_ratio=self.min_lr_ratio)
            for base in self.base_lrs
        ]
