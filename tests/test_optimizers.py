"""Optimizers from hyperparameters: torch's fused kernels, checked against its loop implementation."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from lrpo_study.tasks import Task
from lrpo_study.training.hyperparameters import resolve
from lrpo_study.training.optimizers import build_optimizer


@pytest.mark.parametrize("given", [
    {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
    {"optimizer": "adamw", "beta2": 0.99, "weight_decay": 0.1},
])
def test_fused_optimizer_steps_like_torchs_loop_implementation(given: dict[str, Any], small_task: Task) -> None:
    """Both optimizers take the same real gradients: Adam turns gradients at rounding level into
    ±lr steps, so two models trained apart would drift by more than the optimizers differ."""
    hp = resolve("fixed", {"lr": 0.05, **given})
    torch.manual_seed(0)
    model = small_task.build_model()
    twin, initial = copy.deepcopy(model), copy.deepcopy(model.state_dict())
    fast = build_optimizer(model.parameters(), hp, matrices_only=True)
    loop = build_optimizer(twin.parameters(), hp, matrices_only=True)
    assert [g["fused"] for g in fast.param_groups] == [True, True]
    for group in loop.param_groups:  # torch's readable per-parameter implementation
        group["fused"], group["foreach"] = None, False
    x, y = small_task.train
    for step in range(6):
        batch = slice(step * 256, (step + 1) * 256)
        fast.zero_grad(set_to_none=True)
        small_task.loss_fn(model(x[batch]), y[batch]).backward()
        for p, q in zip(model.parameters(), twin.parameters(), strict=True):
            q.grad = p.grad.clone()
        for opt in (fast, loop):
            for group in opt.param_groups:
                group["lr"] = 0.05 * (1 + step) / 6  # the lr a schedule writes between steps must be read
            opt.step()
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert not torch.equal(p, initial[name]), f"{name} did not move"
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
