"""Learning-rate schedules in plain PyTorch: one file each, no Optuna.

Every schedule is a ``torch.optim.lr_scheduler`` object for any optimizer and
any number of param groups (``step()``, ``get_last_lr()``, ``state_dict()``;
``step(metrics)`` for the value-driven ones), documents its ``interval`` and
``monitor``, and has a pure function beside it (``fixed_lr``, ``cosine_lr``,
...) that gives the lr as a function of the step. See ``_base`` for the two
hooks a plain loop calls.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import torch

from ._base import Interval, MetricSchedule, Monitor, ScheduleHooks, StepSchedule
from ._params import MAX_BATCH, MAX_EPOCHS, MAX_STEPS, Param, validate_params
from ._predictor import Counter
from .cosine import CosineLR, cosine_lr
from .curvature import CurvatureLR, curvature_factor, hutchinson_trace
from .fixed import FixedLR, fixed_lr
from .greedy import GreedyLR
from .lrpo import LRPO, faithful_alpha, lrpo_lr
from .onecycle import OneCycleLR, onecycle_lr
from .piecewise import PiecewiseLR, piecewise_lr
from .wsd import WSDLR, wsd_lr

# Annotation for any of our schedules: both kinds share ScheduleHooks and torch's protocol.
Schedule = StepSchedule | MetricSchedule

SCHEDULES: dict[str, type[Schedule]] = {
    "fixed": FixedLR,
    "cosine": CosineLR,
    "onecycle": OneCycleLR,
    "lrpo": LRPO,
    "greedylr": GreedyLR,
    "curvature": CurvatureLR,
    "wsd": WSDLR,
    "pbt": PiecewiseLR,  # the schedule population-based training discovers: one lr per generation
}
NEEDS_TOTAL_STEPS = ("cosine", "onecycle", "wsd", "pbt")  # their lr at a step depends on the run's length in steps (pbt: on its epochs' length)

__all__ = [
    "MAX_BATCH", "MAX_EPOCHS", "MAX_STEPS", "NEEDS_TOTAL_STEPS", "SCHEDULES", "Interval", "MetricSchedule", "Monitor", "Param", "Schedule", "ScheduleHooks", "StepSchedule", "make_schedule", "validate_params",
    "FixedLR", "CosineLR", "OneCycleLR", "LRPO", "GreedyLR", "CurvatureLR", "WSDLR", "PiecewiseLR",
    "fixed_lr", "cosine_lr", "onecycle_lr", "lrpo_lr", "faithful_alpha", "wsd_lr", "piecewise_lr",
    "curvature_factor", "hutchinson_trace",
]


def make_schedule(
    method: str, optimizer: torch.optim.Optimizer, hyperparameters: Mapping[str, Any], *,
    total_steps: int | None = None, params: Iterable[torch.Tensor] | None = None,
    probe: Callable[[float], float] | None = None, seed: int = 0, ignore: Collection[str] = (),
    counter: Counter | None = None,
) -> Schedule:
    """Build ``method``'s schedule from a hyperparameter mapping: the schedule's own keys (see its
    ``PARAMS``) and ``epochs``; any other key is an error unless named in ``ignore`` (the training
    loop passes its whole record and ignores the training keys).

    ``total_steps`` (batches in the whole run) is needed by cosine, onecycle, wsd and pbt,
    ``params`` (the model's parameters) by curvature, ``probe`` by lrpo's
    ``predicted`` variant (``counter``, if given, counts its predictor's FLOPs).
    """
    if method not in SCHEDULES:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(SCHEDULES)}")
    cls = SCHEDULES[method]
    unknown = sorted(set(hyperparameters) - set(cls.PARAMS) - set(ignore) - {"epochs"})
    if unknown:
        raise ValueError(f"unknown {method} hyperparameter {unknown[0]!r}; allowed: {', '.join(sorted(cls.PARAMS))}")
    kwargs: dict[str, Any] = {k: hyperparameters[k] for k in cls.PARAMS if k in hyperparameters}
    if method in NEEDS_TOTAL_STEPS:
        if total_steps is None:
            raise ValueError(f"{method} needs total_steps=epochs * batches_per_epoch")
        if method == "pbt":
            epochs = hyperparameters.get("epochs")
            if not isinstance(epochs, int) or epochs < 1 or total_steps % epochs:
                raise ValueError(f"pbt needs epochs that divide total_steps={total_steps} (its pieces are epochs), got {epochs=}")
            kwargs["steps_per_epoch"] = total_steps // epochs
        else:
            kwargs["total_steps"] = total_steps
    if method == "curvature":
        if params is None:
            raise ValueError("curvature needs params=model.parameters() to estimate tr(H)")
        kwargs.update(params=params, seed=seed)
    if method == "lrpo":
        kwargs.update(probe=probe, seed=seed, counter=counter)
    schedule = cls(optimizer, **kwargs)
    schedule.epochs = hyperparameters.get("epochs")
    return schedule
