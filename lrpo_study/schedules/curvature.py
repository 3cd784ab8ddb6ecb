"""Curvature-adaptive lr: η = η₀ / sqrt(1 + λ·tr(H)), tr(H) by Hutchinson's estimator.

Every ``estimate_every`` batches the schedule estimates the Hessian trace of
the current batch loss with Rademacher probes (Hv by double backward, about
one extra backward pass each), divides it by the parameter count so one λ
range fits models of any size, smooths it with an EMA (``beta``) and sets
lr = η₀ / sqrt(max(clamp, 1 + λ·trace)). The trace can be negative away from a
minimum; ``clamp`` bounds the lr at η₀ / sqrt(clamp).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, SupportsFloat

import torch

from lrpo_study.errors import UserError

from ._base import StepSchedule
from ._params import MAX_STEPS, Param


def hutchinson_trace(
    loss: torch.Tensor, params: Sequence[torch.Tensor], *, n_probes: int = 1,
    generator: torch.Generator | None = None,
) -> float:
    """Estimate tr(∇²loss) as the mean of vᵀHv over Rademacher vectors v."""
    grads = torch.autograd.grad(loss, params, create_graph=True)
    total = 0.0
    for _ in range(n_probes):
        vs = [
            (torch.randint(0, 2, p.shape, generator=generator, dtype=p.dtype) * 2 - 1).to(p.device)
            for p in params
        ]
        hvs = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)
        total += float(sum((v * hv).sum() for v, hv in zip(vs, hvs, strict=True)))
    return total / n_probes


class SecondDerivativeUnavailable(UserError, RuntimeError):
    """The model's graph cannot be differentiated twice (fused kernels such as flash attention on CPU):
    a choice of model the user can change, so the CLI reports it in one line like any bad input."""


def curvature_factor(trace_per_param: float, *, lam: float, clamp: float) -> float:
    """Pure reference: the multiplier on η₀ for a given (smoothed) normalized trace."""
    return 1.0 / math.sqrt(max(clamp, 1.0 + lam * trace_per_param))


class CurvatureLR(StepSchedule):
    """Per-step lr η₀·factor; the factor is re-estimated in ``observe(loss)``, the one hook that
    sees the loss graph. Stepping without observing a loss when an estimate is due raises, rather
    than silently training at a fixed lr."""

    interval = "step"
    step_function = False  # the lr follows the Hessian trace of the losses seen
    COST_PARAMS = frozenset({"estimate_every", "n_probes"})  # Hessian-vector products
    PARAMS = {
        "lam": Param(float, 1000.0, "λ, applied to tr(H) / parameter count", low=0.0),
        "estimate_every": Param(int, 20, "batches between Hessian-trace estimates", low=1, high=MAX_STEPS),
        "beta": Param(float, 0.9, "EMA factor for the trace", low=0.0, high=1.0, high_open=True),
        "clamp": Param(float, 0.25, "lower bound on 1 + λ·tr(H)", low=0.0, low_open=True),
        "n_probes": Param(int, 1, "Rademacher vectors per estimate", low=1, high=1024),
    }

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, params: Iterable[torch.Tensor] | None = None,
        lam: float = 1000.0, estimate_every: int = 20, beta: float = 0.9, clamp: float = 0.25,
        n_probes: int = 1, seed: int = 0,
    ) -> None:
        if params is None:
            raise ValueError("curvature schedule needs params=model.parameters() to estimate tr(H)")
        self.params = [p for p in params if p.requires_grad]
        self.n_params = sum(p.numel() for p in self.params)
        self.lam = lam
        self.estimate_every = estimate_every
        self.beta = beta
        self.clamp = clamp
        self.n_probes = n_probes
        self.trace_ema: float | None = None
        self.factor = 1.0
        self.observed_step = -1  # the last step whose loss graph was observed
        self.generator = torch.Generator().manual_seed(seed)
        super().__init__(optimizer)

    def observe(self, loss: torch.Tensor) -> None:
        if self.last_epoch % self.estimate_every or self.observed_step == self.last_epoch:
            self.observed_step = self.last_epoch
            return
        self.observed_step = self.last_epoch
        try:
            trace = hutchinson_trace(loss, self.params, n_probes=self.n_probes, generator=self.generator)
        except RuntimeError as exc:
            if "derivative for" not in str(exc):
                raise
            raise SecondDerivativeUnavailable(
                "the curvature schedule differentiates the loss twice, but the model uses an operation without a "
                f"second derivative ({str(exc).splitlines()[0]}); use a plain implementation of it "
                "(shakespeare-char: --task-option attention=math)"
            ) from None
        trace /= self.n_params
        self.trace_ema = trace if self.trace_ema is None else self.beta * self.trace_ema + (1 - self.beta) * trace
        self.factor = curvature_factor(self.trace_ema, lam=self.lam, clamp=self.clamp)
        # The new lr applies to this batch's optimizer step already.
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr

    def step_phase(self) -> object:
        return self.last_epoch % self.estimate_every == 0  # Hessian-vector products at this step

    def get_last_lr(self) -> list[float]:  # type: ignore[override]
        """The lr set last: by the latest step, or by ``observe`` within the step it estimated at."""
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def step(self, metrics: SupportsFloat | None = None) -> None:  # type: ignore[override]
        constructing = self.last_epoch < 0  # LRScheduler.__init__ takes the first step from last_epoch -1
        if not constructing and self.last_epoch % self.estimate_every == 0 and self.observed_step != self.last_epoch:
            raise RuntimeError(
                f"CurvatureLR was stepped without a loss at step {self.last_epoch}: call "
                "schedule.observe(loss) between forward and backward (Lightning/Trainer: add lrpo_study's callback)"
            )
        super().step(metrics)

    def get_lr(self) -> list[float | torch.Tensor]:
        return [float(base) * self.factor for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        if "generator" in state:
            self.generator.set_state(state.pop("generator"))
        super().load_state_dict(state)
