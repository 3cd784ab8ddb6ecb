"""Built-in task ``fashion-mnist``: the paper's MLP (exactly 245,290 parameters) or a small CNN
on a seeded split of Fashion-MNIST (see ``lrpo_study.tasks.data``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from lrpo_study.schedules import Param

from ._task import Task
from .data import MEAN, SPLITS, STD, load_split


def bernoulli_keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """Keep-mask with P(keep) = 1 - p (to 2**-16), from 16-bit slices of 64-bit random words.

    CPU ``bernoulli_`` draws one Mersenne-Twister number per element and took
    30 % of an epoch of the paper MLP; this draws one per four elements.
    """
    n = shape.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)
    return words.view(torch.int16)[:n].view(shape) >= (-32768 + round(p * 65536))


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a faster mask on CPU; on CUDA (and p = 0 or eval) it is nn.Dropout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        return x * (bernoulli_keep_mask(x.shape, self.p) * (1.0 / (1.0 - self.p)))


def paper_mlp() -> nn.Module:
    """The reference code's "CNN with 245,290 params", which is really this MLP."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), Dropout(0.3),
        nn.Linear(256, 128), nn.BatchNorm1d(128), nn.ReLU(), Dropout(0.4),
        nn.Linear(128, 64), nn.ReLU(), Dropout(0.3),
        nn.Linear(64, 32), nn.ReLU(),
        nn.Linear(32, 10),
    )


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 64), nn.ReLU(), Dropout(0.3),
        nn.Linear(64, 10),
    )


MODELS: dict[str, Callable[[], nn.Module]] = {"mlp": paper_mlp, "cnn": small_cnn}


def build_model(name: str) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    return MODELS[name]()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


OPTIONS: dict[str, Param] = {
    "model": Param(str, "mlp", "the paper's MLP or a small CNN", choices=tuple(MODELS)),
    "split": Param(str, "holdout", "paper: the reference code's; holdout: keeps the test set untouched", choices=SPLITS),
    "train_size": Param(int, 20000, "training images", low=1, high=60000),
    "val_size": Param(int, 4000, "validation images", low=1, high=60000),
    "augment": Param(bool, False, "random crop (padding 2) and horizontal flip per training image, drawn afresh each "
                     "epoch (the Dataset path; false keeps the device-resident tensor path)"),
    "num_workers": Param(int, 0, "DataLoader worker processes with augment (0: in the training process)", low=0, high=64),
}


class Augmented(Dataset):
    """Normalized training images with torchvision's RandomCrop (padding 2, black) and RandomHorizontalFlip."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        from torchvision.transforms import v2  # noqa: PLC0415  (torchvision's import is slow; only augment needs it)

        self.x, self.y = x, y
        black = (0.0 - MEAN) / STD  # padding is black in the normalized images
        self.transform = v2.Compose([v2.RandomCrop(28, padding=2, fill=black), v2.RandomHorizontalFlip()])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.x[i]), self.y[i]


def make_task(
    *, data_dir: str | os.PathLike[str] | None = None, seed: int = 42, **options: Any,
) -> Task:
    """``options`` are already validated against ``OPTIONS``; ``seed`` carves the split."""
    model = options["model"]
    split = load_split(
        split=options["split"], data_dir=data_dir, seed=seed, train_size=options["train_size"],
        val_size=options["val_size"],
    )
    test = None if split.test_x is None or split.test_y is None else (split.test_x, split.test_y)
    train = Augmented(split.train_x, split.train_y) if options["augment"] else (split.train_x, split.train_y)
    return Task(
        build_model=lambda: build_model(model), train=train, val=(split.val_x, split.val_y), test=test,
        name="fashion-mnist", num_workers=options["num_workers"],
    )
