"""A user's own workloads, as a user would write them: seeded synthetic problems with their own models.

Study files name them as ``tests.user_task:classification`` etc. (resolved from the repository root).
"""

from __future__ import annotations

import dataclasses

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


class Squares(torch.utils.data.Dataset):
    """Seeded 1×16×16 images: a bright square in one of four row bands (the class), at a random column.
    With ``augment``, torchvision's RandomCrop(padding 2) and RandomHorizontalFlip per sample, as vision
    projects train. ``seen`` keeps every version of item 0 handed out (in this process)."""

    def __init__(self, n: int, *, seed: int, augment: bool) -> None:
        from torchvision.transforms import v2

        gen = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 4, (n,), generator=gen)
        self.x = torch.rand(n, 1, 16, 16, generator=gen) * 0.3
        cols = torch.randint(0, 13, (n,), generator=gen)
        for i in range(n):
            row = 4 * int(self.y[i])
            self.x[i, :, row:row + 3, cols[i]:cols[i] + 3] += 1.0
        self.transform = v2.Compose([v2.RandomCrop(16, padding=2), v2.RandomHorizontalFlip()]) if augment else None
        self.seen: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[i] if self.transform is None else self.transform(self.x[i])
        if i == 0:
            self.seen.append(x)
        return x, self.y[i]


def augmented_squares(*, n: int = 384, num_workers: int = 0) -> Task:
    """A Dataset task with random per-sample augmentation (train) and plain validation and test sets."""
    return Task(
        build_model=lambda: nn.Sequential(nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 4)),
        train=Squares(n, seed=0, augment=True), val=Squares(128, seed=1, augment=False),
        test=Squares(128, seed=2, augment=False), num_workers=num_workers, name="augmented-squares",
    )


class Characters(torch.utils.data.Dataset):
    """Windows of Tiny Shakespeare as transformers batches: ``{"input_ids": w, "labels": w}``."""

    def __init__(self, ids: torch.Tensor, block: int) -> None:
        self.ids, self.block = ids, block

    def __len__(self) -> int:
        return (len(self.ids) - 1) // self.block

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        window = self.ids[i * self.block:(i + 1) * self.block].long()
        return {"input_ids": window, "labels": window}


def tiny_gpt2(*, chars: int = 24_000, block: int = 32, with_loss: bool = True) -> Task:
    """transformers' GPT2LMHeadModel (built from a small config, no download) on dict batches; it computes
    its own loss from ``labels``. ``with_loss=False`` drops the labels: the model then returns no loss."""
    import os
    from pathlib import Path

    from transformers import GPT2Config, GPT2LMHeadModel

    text = (Path(os.environ["LRPO_DATA_DIR"]) / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:chars]
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text], dtype=torch.uint8)
    cut = int(len(ids) * 0.8)
    train, val = Characters(ids[:cut], block), Characters(ids[cut:], block)
    if not with_loss:
        train = _WithoutLabels(train)
    config = GPT2Config(vocab_size=len(vocab), n_positions=block, n_embd=32, n_layer=1, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    def build() -> nn.Module:
        model = GPT2LMHeadModel(config)
        model.loss_type = "ForCausalLM"  # named, so transformers does not warn that it guessed it
        return model

    return Task(build_model=build, train=train, val=val, name="tiny-gpt2")


class _WithoutLabels(torch.utils.data.Dataset):
    def __init__(self, inner: torch.utils.data.Dataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.inner[i]["input_ids"]}


class _NotTensors(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple[list[float], int]:
        return [0.0, 1.0], i


def items_not_tensors() -> Task:
    return Task(build_model=lambda: nn.Linear(2, 2), train=_NotTensors(), val=_NotTensors())


def negative_workers() -> Task:
    return dataclasses.replace(augmented_squares(n=16), num_workers=-1)


def a_loader() -> Task:
    squares = Squares(8, seed=0, augment=False)
    return Task(build_model=lambda: nn.Linear(2, 2), train=torch.utils.data.DataLoader(squares), val=squares)


def stock_fashion_mnist(*, n: int = 1024) -> Task:
    """torchvision's own FashionMNIST as a user would take it: items (Tensor, int), the class an ``int``."""
    import os

    from torch.utils.data import Subset
    from torchvision import datasets, transforms

    data = datasets.FashionMNIST(os.environ["LRPO_DATA_DIR"], train=True, download=False, transform=transforms.ToTensor())
    return Task(
        build_model=lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10)),
        train=Subset(data, range(n)), val=Subset(data, range(n, n + 512)), name="stock-fashion-mnist",
    )


def model_is_a_string() -> Task:
    return dataclasses.replace(classification(n=64), build_model=lambda: "mlp")


def float_class_targets() -> Task:
    """Targets that look like classes but are floats: the default cross-entropy would truncate them."""
    task = classification(n=64)
    (x, y), (vx, vy) = task.train, task.val
    return dataclasses.replace(task, train=(x, y.float()), val=(vx, vy.float()))


def balanced_accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """The mean of the per-class recalls (scikit-learn's balanced_accuracy_score)."""
    predicted = outputs.argmax(-1)
    recalls = [float((predicted[targets == c] == c).float().mean()) for c in targets.unique()]
    return sum(recalls) / len(recalls)


def imbalanced(*, n: int = 768, seed: int = 0) -> Task:
    """``classification`` with one class three times as common as the others, scored by balanced accuracy
    too (``Task.metrics``): a study maximizes ``val_balanced``."""
    gen = torch.Generator().manual_seed(seed)
    x, y = _blobs(2 * (n + 512), 8, 4, gen)
    keep = torch.cat([torch.nonzero(y == 0).flatten(), torch.nonzero(y != 0).flatten()[: (n + 512) // 2]])
    keep = keep[torch.randperm(len(keep), generator=gen)][: n + 512]
    x, y = x[keep], y[keep]
    train, val, test = (x[:n], y[:n]), (x[n:n + 256], y[n:n + 256]), (x[n + 256:], y[n + 256:])
    return Task(
        build_model=lambda: nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4)),
        train=train, val=val, test=test, name="blobs-imbalanced", metrics={"balanced": balanced_accuracy},
    )
