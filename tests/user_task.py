"""A user's own workloads, as a user would write them: seeded synthetic problems with their own models.

Study files name them as ``tests.user_task:classification`` etc. (resolved from the repository root).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lrpo_study import Task

NOT_CALLABLE = 3


def _blobs(n: int, features: int, classes: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    centers = torch.randn(classes, features, generator=gen) * 1.5
    y = torch.randint(0, classes, (n,), generator=gen)
    return centers[y] + torch.randn(n, features, generator=gen), y


def classification(*, n: int = 768, features: int = 8, classes: int = 4, seed: int = 0) -> Task:
    """Gaussian blobs, a small MLP, cross-entropy and accuracy (the defaults)."""
    gen = torch.Generator().manual_seed(seed)
    x, y = _blobs(n + 512, features, classes, gen)
    train, val, test = (x[:n], y[:n]), (x[n:n + 256], y[n:n + 256]), (x[n + 256:], y[n + 256:])
    return Task(
        build_model=lambda: nn.Sequential(nn.Linear(features, 32), nn.ReLU(), nn.Linear(32, classes)),
        train=train, val=val, test=test, name="blobs",
    )


def regression(*, n: int = 512, features: int = 6) -> Task:
    """A noisy linear target, a linear model and mean squared error: no accuracy, no test data."""
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(features, 1, generator=gen)
    x = torch.randn(n + 128, features, generator=gen)
    y = x @ w + 0.1 * torch.randn(n + 128, 1, generator=gen)
    return Task(
        build_model=lambda: nn.Linear(features, 1), train=(x[:n], y[:n]), val=(x[n:], y[n:]),
        loss=F.mse_loss, has_accuracy=False, name="linear-regression",
    )


def raises() -> Task:
    raise RuntimeError("the user's data server is down")


def not_a_task() -> dict:
    return {"train": None}


TEST_MARK = 7.0  # every test input equals this; no training or validation input does
test_set_evaluations: list[int] = []  # one entry per forward pass over test inputs, in this process


class _CountsTestPasses(nn.Module):
    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, 32), nn.ReLU(), nn.Linear(32, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x == TEST_MARK).all()):
            test_set_evaluations.append(len(x))
        return self.net(x)


def counts_test_passes(*, features: int = 8, classes: int = 4) -> Task:
    """``classification`` whose model counts the batches it sees from the test split."""
    task = classification(features=features, classes=classes)
    x, y = task.test  # type: ignore[misc]
    return Task(build_model=lambda: _CountsTestPasses(features, classes), train=task.train, val=task.val,
                test=(torch.full_like(x, TEST_MARK), y), name="blobs-counting")


def notes_imports_at_first_model(*, note: str = "") -> Task:
    """``classification`` whose first model build writes to ``note`` which lazily imported modules are loaded."""
    import json
    import sys
    from pathlib import Path

    task = classification()

    def build() -> nn.Module:
        if note and not Path(note).exists():
            Path(note).write_text(json.dumps({m: m in sys.modules for m in ("numpy", "torch._dynamo")}))
        return task.build_model()

    return Task(build_model=build, train=task.train, val=task.val, test=task.test, name="blobs-noting")


RECIPE = {"optimizer": "adamw", "beta2": 0.95, "lr": 0.02, "batch_size": 32, "epochs": 2, "weight_decay": 0.0}


def with_recipe() -> Task:
    """``classification`` that declares the hyperparameters it trains with by default."""
    task = classification()
    return Task(build_model=task.build_model, train=task.train, val=task.val, test=task.test, name="blobs-recipe",
                defaults=RECIPE)
