"""Fashion-MNIST as normalized tensors on the training device.

Two seeded splits:

- ``paper``: the reference code's split: 20,000 random images of the official
  train set for training, 4,000 "validation" images drawn from the official
  test set (so there is no untouched test set).
- ``holdout`` (default for studies): train and validation both carved from
  the official train set; the official test set (10,000) is kept for
  ``confirm``.

Batches are index slices of a seeded permutation of these tensors: no
per-sample transforms and no DataLoader in the hot loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lrpo_study.errors import UserError

MEAN, STD = 0.2860, 0.3530
SPLITS = ("paper", "holdout")
DATA_DIR_ENV = "LRPO_DATA_DIR"


@dataclass(frozen=True)
class Split:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    name: str

    def to(self, device: torch.device | str) -> Split:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return Split(
            self.train_x.to(device), self.train_y.to(device), self.val_x.to(device),
            self.val_y.to(device), move(self.test_x), move(self.test_y), self.name,
        )


def resolve_root(data_dir: str | os.PathLike[str] | None, *, needs: str | None = None) -> tuple[Path, bool]:
    """The data root and whether the built-in tasks may download into it.

    ``--data-dir`` wins, then ``$LRPO_DATA_DIR``; both must already hold the
    files (``needs``: the sub-folder a task reads). Without either, data is
    downloaded into ~/.cache/lrpo_study/data.
    """
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    if chosen is None:
        return Path.home() / ".cache" / "lrpo_study" / "data", True
    root = Path(chosen).expanduser()
    if not root.is_dir():
        raise UserError(
            f"data directory {str(root)!r} does not exist (--data-dir or {DATA_DIR_ENV} names the folder that "
            "holds FashionMNIST/raw/ or tinyshakespeare/)"
        )
    if needs is not None and not (root / needs).is_dir():
        raise UserError(
            f"data directory {str(root)!r} has no {needs}/ folder "
            f"(set --data-dir or {DATA_DIR_ENV} to the folder that contains {needs.split('/')[0]}/)"
        )
    return root, False


def _load_official(root: Path, *, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import FashionMNIST  # noqa: PLC0415  (torchvision's import is slow; only loading needs it)

    part = "train" if train else "test"
    try:
        ds = FashionMNIST(root=str(root), train=train, download=download)
    except (RuntimeError, ValueError, AssertionError, OSError) as exc:  # what torchvision raises on a bad or missing file
        hint = (f"; offline? pass --data-dir DIR or set {DATA_DIR_ENV}=DIR, the folder holding FashionMNIST/raw/"
                if download else "")
        first = f"{exc}".strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read Fashion-MNIST {part} files under {str(root)!r}: {first}{hint}") from exc
    x, y = ds.data, ds.targets
    expected = 60000 if train else 10000
    if x.shape != (expected, 28, 28) or y.shape != (expected,) or int(y.max()) > 9:
        raise UserError(f"Fashion-MNIST {part} files under {str(root)!r} are corrupted: images {tuple(x.shape)}")
    return x, y


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() / 255.0 - MEAN) / STD).unsqueeze(1).contiguous()


def load_split(
    *, split: str = "holdout", data_dir: str | os.PathLike[str] | None = None, seed: int = 42,
    train_size: int = 20000, val_size: int = 4000,
) -> Split:
    """Load a seeded split on the CPU; call ``.to(device)`` once."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    if train_size < 1 or val_size < 1:
        raise UserError(f"train_size and val_size must be >= 1, got {train_size=} {val_size=}")
    root, download = resolve_root(data_dir, needs="FashionMNIST/raw")
    train_x, train_y = _load_official(root, train=True, download=download)
    test_x, test_y = _load_official(root, train=False, download=download)
    gen = torch.Generator().manual_seed(seed)
    if split == "paper":
        if train_size > 60000 or val_size > 10000:
            raise UserError(f"paper split allows train_size <= 60000 and val_size <= 10000, got {train_size=} {val_size=}")
        tr = torch.randperm(60000, generator=gen)[:train_size]
        va = torch.randperm(10000, generator=gen)[:val_size]
        return Split(_normalize(train_x[tr]), train_y[tr], _normalize(test_x[va]), test_y[va], None, None, split)
    if train_size + val_size > 60000:
        raise UserError(f"holdout split needs train_size + val_size <= 60000, got {train_size + val_size}")
    perm = torch.randperm(60000, generator=gen)
    tr, va = perm[:train_size], perm[train_size:train_size + val_size]
    return Split(
        _normalize(train_x[tr]), train_y[tr], _normalize(train_x[va]), train_y[va],
        _normalize(test_x), test_y.clone(), split,
    )
