"""The LRPO predictor, trained on real observations of the run it steers.

At the jump, the run is probed: from a snapshot of the model and optimizer,
``probe(α)`` trains a few batches at lr·α and returns the training loss on a
fixed held batch, then restores the snapshot. A small MLP (α → loss after
the probe; hidden size ``hidden``) is fitted to those observations, and the
α in [α_min, α_max] whose predicted loss is lowest is the jump factor. So the
predictor's output decides α, and what it learns is this run's own response
to the jump, not synthetic data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn


class Counter(Protocol):
    """Counts the FLOPs of a block of work, once per key (``lrpo_study.training.compute.FlopCounter``)."""

    def count(self, key: Hashable) -> AbstractContextManager[None]: ...


def _counted(counter: Counter | None, key: Hashable) -> AbstractContextManager[None]:
    return nullcontext() if counter is None else counter.count(key)


@dataclass(frozen=True)
class AlphaChoice:
    alpha: float
    candidates: list[float]
    observed_losses: list[float]
    seconds: float


def fit_predictor(
    alphas: torch.Tensor, losses: torch.Tensor, *, hidden: int, seed: int, steps: int = 300, counter: Counter | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Fit α → loss with an MLP on standardized inputs; return the predict function. ``counter`` counts
    each fitting step's and each prediction's FLOPs (the same shapes every step: one counted step)."""
    gen = torch.Generator().manual_seed(seed)
    a_mean, a_std = alphas.mean(), alphas.std().clamp_min(1e-8)
    l_mean, l_std = losses.mean(), losses.std().clamp_min(1e-8)
    net = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / max(1, p.shape[-1])) ** 0.5)
    x = ((alphas - a_mean) / a_std).unsqueeze(1)
    y = ((losses - l_mean) / l_std).unsqueeze(1)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(steps):
        with _counted(counter, ("predictor step", len(alphas), hidden)):
            opt.zero_grad()
            nn.functional.mse_loss(net(x), y).backward()
            opt.step()

    def predict(a: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), _counted(counter, ("predictor", len(a), hidden)):
            return net(((a - a_mean) / a_std).unsqueeze(1)).squeeze(1) * l_std + l_mean

    return predict


def choose_alpha(
    probe: Callable[[float], float], *, alpha_min: float, alpha_max: float, hidden: int,
    candidates: int = 5, seed: int = 0, counter: Counter | None = None,
) -> AlphaChoice:
    """Probe the run at ``candidates`` α values, fit the predictor, return its best α."""
    start = time.perf_counter()
    grid = torch.linspace(alpha_min, alpha_max, candidates, dtype=torch.float64)
    observed = torch.tensor([probe(float(a)) for a in grid], dtype=torch.float64)
    finite = torch.isfinite(observed)
    if finite.sum() < 2:
        alpha = alpha_min
    else:
        with torch.random.fork_rng(devices=[]):
            predict = fit_predictor(grid[finite].float(), observed[finite].float(), hidden=hidden, seed=seed, counter=counter)
            dense = torch.linspace(alpha_min, alpha_max, 101)
            alpha = float(dense[int(torch.argmin(predict(dense)))])
    return AlphaChoice(alpha, grid.tolist(), observed.tolist(), time.perf_counter() - start)
