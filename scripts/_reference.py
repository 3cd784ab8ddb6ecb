"""The reference code's training style, for benchmarks: per-sample transforms and a DataLoader."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import transforms
from torchvision.datasets import FashionMNIST

from lrpo_study.tasks.data import MEAN, STD, resolve_root

SAMPLES, BATCH = 20000, 1024


def reference_mlp() -> nn.Module:
    """The paper MLP exactly as the reference code builds it (torch's Dropout)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(256, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.4),
        nn.Linear(128, 64), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(64, 32), nn.ReLU(),
        nn.Linear(32, 10),
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reference_loader(data_dir: str | None, seed: int = 42) -> DataLoader:
    root, download = resolve_root(data_dir)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    full = FashionMNIST(root=str(root), train=True, download=download, transform=tf)
    indices = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))[:SAMPLES].tolist()
    return DataLoader(Subset(full, indices), batch_size=BATCH, shuffle=True)


def reference_train(
    loader: DataLoader, device: torch.device, epochs: int, *, after_epoch: Callable[[float, torch.optim.Optimizer], None] | None = None,
    seed: int = 42,
) -> list[float]:
    """Train the reference way; ``after_epoch(train_loss, optimizer)`` may change the lr. Returns epoch seconds."""
    torch.manual_seed(seed)
    model = reference_mlp().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    times = []
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        total, count = 0.0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(x), count + len(x)
        if after_epoch is not None:
            after_epoch(total / count, opt)
        sync(device)
        times.append(time.perf_counter() - start)
    return times
