"""LRPO: pretrain at a fixed lr, jump one epoch at lr·α, fine-tune at a low lr.

Epochs 0..P-1 run at the base lr, epoch P at base·α, and the remaining
``finetune_epochs`` at ``finetune_lr`` (per param group, in proportion to the
group's base lr). α is decided at the end of epoch P-1 by the ``variant``:

- ``faithful``: the reference code's hand rule on the pretrain loss curve,
  r = (loss[-3] − loss[-1]) / 3; α = min(2, 1 + 10·r) if r > 0 else 0.8,
  clamped to [0.5, 2] (loss[-3] is the epoch-8 loss of a 10-epoch pretrain).
- ``predicted``: a predictor trained on probes of this same run decides α in
  [alpha_min, alpha_max] (see ``lrpo_study.schedules._predictor``). Needs ``probe``.
- ``manual``: α is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch

from . import _predictor as predictor
from ._base import MetricSchedule
from ._params import MAX_EPOCHS, Param


def faithful_alpha(losses: list[float]) -> float:
    """The reference implementation's jump rule on the pretrain loss curve."""
    r = (losses[max(0, len(losses) - 3)] - losses[-1]) / 3
    alpha = min(2.0, 1.0 + 10.0 * r) if r > 0 else 0.8
    return min(2.0, max(0.5, alpha))


def lrpo_lr(
    epoch: int, *, base_lr: float, alpha: float, pretrain_epochs: int, finetune_lr: float
) -> float:
    """Pure reference: the lr used during ``epoch`` (0-based) once α is known."""
    if epoch < pretrain_epochs:
        return base_lr
    if epoch == pretrain_epochs:
        return base_lr * alpha
    return finetune_lr


class LRPO(MetricSchedule):
    """Per epoch, monitoring the epoch's training loss (``step(train_loss)``)."""

    interval = "epoch"
    monitor = "train_loss"
    _STATE_PARAMS = frozenset({"alpha"})
    length_dependent = True
    COST_PARAMS = frozenset({"pretrain_epochs", "finetune_epochs", "variant", "probe_candidates", "predictor_hidden"})
    PARAMS = {
        "pretrain_epochs": Param(int, 10, "epochs at the base lr before the jump", low=1, high=MAX_EPOCHS),
        "finetune_epochs": Param(int, 5, "epochs at finetune_lr after the jump", low=0, high=MAX_EPOCHS),
        "finetune_lr": Param(float, 1e-3, "lr after the jump", low=0.0, low_open=True, high=1e3),
        "variant": Param(str, "faithful", "how α is decided", choices=("faithful", "predicted", "manual")),
        "alpha": Param(float, None, "jump factor (variant='manual' only)", low=0.5, high=2.0, optional=True),
        "alpha_min": Param(float, 0.5, "lowest α the predictor may pick", low=0.5, high=2.0),
        "alpha_max": Param(float, 2.0, "highest α the predictor may pick", low=0.5, high=2.0),
        "predictor_hidden": Param(int, 32, "predictor MLP hidden size", low=1, high=1024),
        "probe_candidates": Param(int, 5, "α values probed for the predictor", low=2, high=50),
    }

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, pretrain_epochs: int = 10, finetune_epochs: int = 5,
        finetune_lr: float = 1e-3, variant: Literal["faithful", "predicted", "manual"] = "faithful",
        alpha: float | None = None, alpha_min: float = 0.5, alpha_max: float = 2.0,
        predictor_hidden: int = 32, probe_candidates: int = 5,
        probe: Callable[[float], float] | None = None, seed: int = 0, counter: predictor.Counter | None = None,
    ) -> None:
        if (variant == "manual") != (alpha is not None):
            raise ValueError(f"alpha is set exactly when variant='manual', got {variant=} {alpha=}")
        if alpha is not None and not 0.5 <= alpha <= 2.0:
            raise ValueError(f"alpha must be in [0.5, 2], got {alpha=}")
        if alpha_min > alpha_max:
            raise ValueError(f"alpha_min must be <= alpha_max, got {alpha_min=} {alpha_max=}")
        if variant == "predicted" and probe is None:
            raise ValueError("lrpo variant='predicted' needs probe=callable(alpha) -> loss after a short probe")
        self.pretrain_epochs = pretrain_epochs
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.variant = variant
        self.alpha = alpha
        self.alpha_min = alpha_min
        self.alpha_max = alpha_max
        self.predictor_hidden = predictor_hidden
        self.probe_candidates = probe_candidates
        self.probe = probe
        self.counter = counter  # counts the predictor's FLOPs (the loop's probe counts its own)
        self.seed = seed
        self.losses: list[float] = []
        self.predictor_seconds = 0.0
        self.probe_record: dict[str, list[float]] = {}
        super().__init__(optimizer)

    @property
    def total_epochs(self) -> int:
        return self.pretrain_epochs + 1 + self.finetune_epochs

    def _update(self, value: float) -> None:
        self.losses.append(value)
        if self.last_epoch == self.pretrain_epochs and self.variant != "manual":
            self.alpha = self._decide_alpha()
        self._set_lrs(self._lrs())

    def extras(self) -> dict[str, Any]:
        record: dict[str, Any] = {"alpha": self.alpha, "predictor_seconds": self.predictor_seconds}
        if self.probe_record:
            record["probe"] = self.probe_record
        return record

    def replay_safe(self, epoch: int) -> bool:
        return not (self.variant == "predicted" and epoch == self.pretrain_epochs)  # the probe needs the model

    def _decide_alpha(self) -> float:
        if self.variant == "faithful":
            return faithful_alpha(self.losses)
        assert self.probe is not None  # checked in __init__
        choice = predictor.choose_alpha(
            self.probe, alpha_min=self.alpha_min, alpha_max=self.alpha_max,
            hidden=self.predictor_hidden, candidates=self.probe_candidates, seed=self.seed, counter=self.counter,
        )
        self.predictor_seconds = choice.seconds
        self.probe_record = {"alphas": choice.candidates, "losses": choice.observed_losses}
        return choice.alpha

    def _lrs(self) -> list[float]:
        """Each group's lr for the epoch after ``last_epoch`` steps (``lrpo_lr``, per group in
        proportion to its base lr)."""
        bases = [float(base) for base in self.base_lrs]
        base0 = bases[0]
        return [
            lrpo_lr(
                self.last_epoch, base_lr=base, alpha=self.alpha if self.alpha is not None else 1.0,
                pretrain_epochs=self.pretrain_epochs, finetune_lr=base * (self.finetune_lr / base0),
            )
            for base in bases
        ]
