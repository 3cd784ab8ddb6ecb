"""The metric vocabulary in one table: every curve a trial records and every objective a study can name.

A trial records **curves**, one value per epoch: its losses and accuracy, any metric its loop reports
(``run.report(val_f1=...)``) or its task computes (``Task(metrics={"f1": fn})`` records ``val_f1``), the lr,
and what the epoch cost (``seconds`` on the clock; ``flops``, ``samples`` and ``tokens`` counted).

An **objective** reduces one curve to a number. Its spelling in a study file:

- a quality: ``"<best|final>_<curve>"`` on a validation curve, with its direction in front when the curve is
  not one of ours: ``"best_val_accuracy"``, ``"final_val_loss"``, ``"max:final_val_f1"``,
  ``"min:best_val_perplexity"`` ("best" is the best epoch in that direction);
- a cost, summed over the epochs: ``train_flops``, ``train_samples``, ``train_tokens``, ``eval_flops``,
  ``train_seconds`` (the clock, which moves with machine load), or ``epochs``.

Nothing outside this module spells a metric's name; readers ask it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "COSTS", "CURVES", "DETERMINISTIC_COSTS", "Curve", "Direction", "Objective", "available", "is_metric_name",
    "parse_objective",
    "quality_objective",
]

Direction = Literal["maximize", "minimize"]
Reduction = Literal["best", "final", "sum", "count"]


@dataclass(frozen=True)
class Curve:
    name: str
    label: str
    direction: Direction | None  # None: neither better high nor low (the lr)
    cost: bool = False  # what training spent in the epoch (objectives sum it)


TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
VAL_ACCURACY = "val_accuracy"
LR = "lr"
SECONDS = "seconds"
FLOPS = "flops"
EVAL_FLOPS = "eval_flops"
SAMPLES = "samples"
TOKENS = "tokens"

CURVES: dict[str, Curve] = {c.name: c for c in (
    Curve(TRAIN_LOSS, "training loss", "minimize"),
    Curve(VAL_LOSS, "validation loss", "minimize"),
    Curve(VAL_ACCURACY, "validation accuracy", "maximize"),
    Curve(LR, "learning rate", None),
    Curve(SECONDS, "training seconds", "minimize", cost=True),  # the clock: schedule overhead included
    Curve(FLOPS, "training FLOPs", "minimize", cost=True),  # forward, backward and the method's extra work
    Curve(EVAL_FLOPS, "evaluation FLOPs", "minimize", cost=True),
    Curve(SAMPLES, "training samples", "minimize", cost=True),
    Curve(TOKENS, "training tokens", "minimize", cost=True),  # sequence tasks only
)}

# Cost objectives: name → the curve they sum ("epochs" counts the epochs).
COSTS: dict[str, str] = {
    "train_seconds": SECONDS, "train_flops": FLOPS, "train_samples": SAMPLES, "train_tokens": TOKENS,
    "eval_flops": EVAL_FLOPS, "epochs": VAL_LOSS,
}
# Costs that are the same for the same schedule on any machine under any load.
DETERMINISTIC_COSTS = ("train_flops", "train_samples", "train_tokens", "eval_flops", "epochs")
_DIRECTIONS: dict[str, Direction] = {"max": "maximize", "min": "minimize"}
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def is_metric_name(name: str) -> bool:
    return isinstance(name, str) and bool(_NAME.fullmatch(name))


def label(curve: str) -> str:
    known = CURVES.get(curve)
    return known.label if known else curve.replace("_", " ").replace("val ", "validation ", 1)


@dataclass(frozen=True)
class Objective:
    """One objective of a study: ``curve`` reduced by ``reduction`` ("best" in ``direction``, "final", "sum",
    "count"); ``spelling`` is how the study file wrote it."""

    spelling: str
    name: str
    curve: str
    reduction: Reduction
    direction: Direction

    @property
    def is_cost(self) -> bool:
        return self.reduction in ("sum", "count")

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "maximize"

    @property
    def deterministic(self) -> bool:
        return self.name in DETERMINISTIC_COSTS

    @property
    def label(self) -> str:
        if self.name == "epochs":
            return "epochs"
        return label(self.curve) if self.is_cost else f"{self.reduction} {label(self.curve)}"

    @property
    def test_metric(self) -> str:
        """The test split's counterpart of a quality objective's curve (``val_f1`` → ``test_f1``)."""
        return "test_" + self.curve.removeprefix("val_")

    def value(self, curves: Mapping[str, Sequence[float]]) -> float:
        """This objective of a trial with these curves (so far)."""
        values = curves[self.curve]
        if self.reduction == "count":
            return float(len(values))
        if self.reduction == "sum":
            return float(math.fsum(values))
        if self.reduction == "final":
            return float(values[-1])
        return float(max(values) if self.higher_is_better else min(values))

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b


def parse_objective(text: str) -> Objective:
    """An objective from its spelling; ``ValueError`` naming what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"an objective is a string like 'best_val_accuracy' or 'max:final_val_f1', got {text!r}")
    prefix, _, name = text.rpartition(":")
    if prefix and prefix not in _DIRECTIONS:
        raise ValueError(f"objective {text!r}: the direction is 'max:' or 'min:', got {prefix + ':'!r}")
    given = _DIRECTIONS.get(prefix)
    if name in COSTS:
        if given == "maximize":
            raise ValueError(f"objective {text!r}: {name} is a cost, minimized")
        return Objective(text, name, COSTS[name], "count" if name == "epochs" else "sum", "minimize")
    match = re.fullmatch(r"(best|final)_(val_[a-z0-9_]+)", name)
    if not match:
        raise ValueError(
            f"unknown objective {text!r}; allowed: {', '.join(COSTS)}, or best_/final_ of a validation curve "
            "(best_val_accuracy, final_val_loss; a metric of your own with its direction: max:final_val_f1)"
        )
    reduction: Reduction = "best" if match.group(1) == "best" else "final"
    curve = match.group(2)
    known = CURVES.get(curve)
    if known is not None and given is not None and given != known.direction:
        raise ValueError(f"objective {text!r}: {curve} is {'maximized' if known.direction == 'maximize' else 'minimized'}")
    direction = given or (known.direction if known else None)
    if direction is None:
        raise ValueError(f"objective {text!r}: say whether {curve} is better high or low: 'max:{name}' or 'min:{name}'")
    return Objective(text, name, curve, reduction, direction)  # type: ignore[arg-type]


BEST_VAL_ACCURACY = parse_objective("best_val_accuracy")
FINAL_VAL_LOSS = parse_objective("final_val_loss")
TRAIN_FLOPS = parse_objective("train_flops")
TRAIN_SECONDS = parse_objective("train_seconds")
EPOCHS = parse_objective("epochs")


def available(curves: Iterable[str]) -> list[Objective]:
    """Every objective these curves allow: final_ (and best_, where the direction is known) of each validation
    curve, and each cost whose curve is there."""
    names = list(curves)
    qualities = [f"{r}_{c}" if c in CURVES else f"max:final_{c}" for c in names if c.startswith("val_")
                 for r in (("best", "final") if c in CURVES else ("final",))]
    return [parse_objective(o) for o in qualities] + [parse_objective(name) for name, curve in COSTS.items() if curve in names]


def quality_objective(objectives: Iterable[str | Objective], *, has_accuracy: bool) -> Objective:
    """The objective that scores the model: a study's first that is not a cost (cost-only studies: accuracy
    where there is one, else the final validation loss)."""
    for o in objectives:
        parsed = o if isinstance(o, Objective) else parse_objective(o)
        if not parsed.is_cost:
            return parsed
    return BEST_VAL_ACCURACY if has_accuracy else FINAL_VAL_LOSS
