"""Optimizers as hyperparameters: ``optimizer = "sgd" | "adamw"`` and each one's own settings.

SGD takes ``momentum`` and ``nesterov``, AdamW ``beta1``, ``beta2`` and
``adam_eps`` (named so because GreedyLR has an ``eps`` of its own); both take
``weight_decay``. A resolved hyperparameter set holds only the chosen
optimizer's keys, so nothing in a record is silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from lrpo_study.schedules import Param

OPTIMIZERS = ("sgd", "adamw")
OPTIMIZER_PARAMS: dict[str, Param] = {
    "optimizer": Param(str, "sgd", "the optimizer", choices=OPTIMIZERS),
    "momentum": Param(float, 0.9, "SGD momentum", low=0.0, high=1.0, high_open=True),
    "nesterov": Param(bool, False, "SGD Nesterov momentum"),
    "beta1": Param(float, 0.9, "AdamW β1", low=0.0, high=1.0, high_open=True),
    "beta2": Param(float, 0.999, "AdamW β2", low=0.0, high=1.0, high_open=True),
    "adam_eps": Param(float, 1e-8, "AdamW ε", low=0.0, low_open=True, high=1.0),
    "weight_decay": Param(float, 1e-4, "weight decay (decoupled for AdamW)", low=0.0, high=10.0),
}
_FUSED_DEVICES = ("cpu", "cuda")
_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
OWN_KEYS: dict[str, tuple[str, ...]] = {"sgd": ("momentum", "nesterov"), "adamw": ("beta1", "beta2", "adam_eps")}


def irrelevant_keys(optimizer: str) -> tuple[str, ...]:
    """The other optimizers' keys: not part of a hyperparameter set that uses ``optimizer``."""
    return tuple(k for name, keys in OWN_KEYS.items() if name != optimizer for k in keys)


def check_optimizer(resolved: dict[str, Any], given: Mapping[str, Any]) -> None:
    """Drop the keys the chosen optimizer does not use; refuse them where they were given."""
    optimizer = resolved["optimizer"]
    for key in irrelevant_keys(optimizer):
        if key in given:
            owner = next(name for name, keys in OWN_KEYS.items() if key in keys)
            raise ValueError(f"{key} applies to optimizer {owner!r} only, got optimizer={optimizer!r}")
        resolved.pop(key, None)
    if optimizer == "sgd" and resolved["nesterov"] and resolved["momentum"] == 0.0:
        raise ValueError("nesterov=true needs momentum > 0, got momentum=0.0")


def build_optimizer(
    params: Iterable[torch.nn.Parameter], hp: Mapping[str, Any], *, matrices_only: bool = False,
) -> torch.optim.Optimizer:
    """The optimizer a resolved hyperparameter set names. With ``matrices_only``, weight decay
    applies to parameters of two or more dimensions only (a second group without decay holds
    biases and norms), as nanoGPT's recipe does."""
    groups: Any = list(params)
    # torch's fused kernels (one per parameter, not ~10 element-wise ops) are the same update,
    # equal to the loop implementation to rounding; they exist for these devices and dtypes only.
    fused = all(p.device.type in _FUSED_DEVICES and p.dtype in _FUSED_DTYPES for p in groups) or None
    if matrices_only:
        groups = [
            {"params": [p for p in groups if p.dim() >= 2]},
            {"params": [p for p in groups if p.dim() < 2], "weight_decay": 0.0},
        ]
    if hp["optimizer"] == "adamw":
        return torch.optim.AdamW(
            groups, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["adam_eps"], weight_decay=hp["weight_decay"],
            fused=fused,
        )
    return torch.optim.SGD(
        groups, lr=hp["lr"], momentum=hp["momentum"], nesterov=hp["nesterov"], weight_decay=hp["weight_decay"],
        fused=fused,
    )
