"""Every hyperparameter a run uses: training ones, the optimizer's and the method's, validated in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lrpo_study.names import METHODS
from lrpo_study.schedules import MAX_BATCH, MAX_EPOCHS, SCHEDULES, Param, validate_params

from .optimizers import OPTIMIZER_PARAMS, check_optimizer, irrelevant_keys

if tuple(SCHEDULES) != METHODS:  # the command line offers METHODS without importing the schedules
    raise ImportError(f"lrpo_study.names.METHODS {METHODS} differs from the schedules {tuple(SCHEDULES)}")

TRAIN_PARAMS: dict[str, Param] = {
    # Bounded far above any lr that trains, so that no value overflows float32 on the way to the optimizer.
    "lr": Param(float, 0.05, "initial (pretrain / peak) learning rate", low=0.0, low_open=True, high=1e3),
    "batch_size": Param(int, 1024, "batch size", low=1, high=MAX_BATCH),
    "epochs": Param(int, 16, "epochs (for lrpo: pretrain + 1 + finetune)", low=1, high=MAX_EPOCHS),
    "grad_clip": Param(float, 0.0, "clip the gradient's norm to this before each step (0: off)", low=0.0, high=1e6),
    **OPTIMIZER_PARAMS,
}


def method_params(method: str) -> dict[str, Param]:
    if method not in SCHEDULES:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    return TRAIN_PARAMS | SCHEDULES[method].PARAMS


def cost_params(method: str, *, clock: bool = False) -> frozenset[str]:
    """The hyperparameters that can change what a run of ``method`` costs: its length, its method's extra work
    (the curvature schedule's Hessian-vector products, LRPO's phases and probes) and, where that work is per
    step or per batch, or the cost is the ``clock``, the batch size. An epoch's counted FLOPs, samples and
    tokens do not depend on the batch size otherwise: its matmuls are linear in the batch."""
    extra = SCHEDULES[method].COST_PARAMS
    return frozenset({"epochs", *(["batch_size"] if clock or extra else [])}) | extra


def expected_keys(method: str, optimizer: str) -> set[str]:
    """The keys of a resolved hyperparameter set for ``method`` with ``optimizer``."""
    return set(method_params(method)) - set(irrelevant_keys(optimizer))


def with_defaults(method: str, values: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` over a task's ``defaults``: of those, the ones ``method`` reads, for the optimizer in use
    (another optimizer given in ``values`` drops the defaults' optimizer settings), and lrpo's ``epochs``
    only when no phase length is given (the phases decide it)."""
    params = method_params(method)
    optimizer = values.get("optimizer", defaults.get("optimizer", params["optimizer"].default))
    skip = set(irrelevant_keys(optimizer))
    if method == "lrpo" and {"pretrain_epochs", "finetune_epochs"} & set(values):
        skip.add("epochs")
    return {**{k: v for k, v in defaults.items() if k in params and k not in skip}, **values}


def resolve(method: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults, check types and ranges, keep the chosen optimizer's keys only, and
    reconcile lrpo's epoch count.

    For lrpo, ``epochs`` alone splits like the paper (16 → 10 + 1 + 5); given
    with both phase lengths it must equal pretrain + 1 + finetune.
    """
    resolved = validate_params(method_params(method), dict(values), what=method)
    check_optimizer(resolved, values)
    if method == "lrpo":
        _reconcile_lrpo_epochs(resolved, values)
        if resolved["variant"] != "manual" and resolved["alpha"] is not None:
            raise ValueError(f"alpha is only used with variant='manual', got variant={resolved['variant']!r}")
        if resolved["variant"] == "manual" and resolved["alpha"] is None:
            raise ValueError("variant='manual' needs alpha in [0.5, 2]")
        if resolved["alpha_min"] > resolved["alpha_max"]:
            raise ValueError(
                f"alpha_min must be <= alpha_max, got alpha_min={resolved['alpha_min']} alpha_max={resolved['alpha_max']}"
            )
    if method == "greedylr" and resolved["min_lr"] > resolved["max_lr"]:
        raise ValueError(f"min_lr must be <= max_lr, got min_lr={resolved['min_lr']} max_lr={resolved['max_lr']}")
    return resolved


def _reconcile_lrpo_epochs(resolved: dict[str, Any], given: Mapping[str, Any]) -> None:
    has_p, has_f = "pretrain_epochs" in given, "finetune_epochs" in given
    if "epochs" not in given:
        resolved["epochs"] = resolved["pretrain_epochs"] + 1 + resolved["finetune_epochs"]
        return
    epochs = resolved["epochs"]
    if not has_p and not has_f:
        if epochs < 2:
            raise ValueError(f"epochs must be >= 2 for lrpo (pretrain + jump), got {epochs=}")
        resolved["finetune_epochs"] = min(round(epochs * 5 / 16), epochs - 2)
        resolved["pretrain_epochs"] = epochs - 1 - resolved["finetune_epochs"]
    elif has_p and not has_f:
        resolved["finetune_epochs"] = epochs - 1 - resolved["pretrain_epochs"]
    elif has_f and not has_p:
        resolved["pretrain_epochs"] = epochs - 1 - resolved["finetune_epochs"]
    total = resolved["pretrain_epochs"] + 1 + resolved["finetune_epochs"]
    if total != epochs or resolved["pretrain_epochs"] < 1 or resolved["finetune_epochs"] < 0:
        raise ValueError(
            f"epochs={epochs} does not match pretrain_epochs={resolved['pretrain_epochs']} + 1 + "
            f"finetune_epochs={resolved['finetune_epochs']}"
        )
