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

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UserError

MEAN, STD = 0.2860, 0.3530
SPLITS = ("paper", "holdout")
DATA_DIR_ENV = "LRPO_DATA_DIR"
DEFAULT_ROOT = Path.home() / ".cache" / "lrpo_study" / "data"


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
        return DEFAULT_ROOT, True
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


_FILES = {  # the official file names (as torchvision's download leaves them, unpacked) and their IDX shapes
    True: (("train-images-idx3-ubyte", (60000, 28, 28)), ("train-labels-idx1-ubyte", (60000,))),
    False: (("t10k-images-idx3-ubyte", (10000, 28, 28)), ("t10k-labels-idx1-ubyte", (10000,))),
}


def read_idx(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    """An IDX file of unsigned bytes (the MNIST format) of exactly ``shape``.

    torchvision reads these too, but importing torchvision imports ``torch._dynamo``
    (about 2.4 s of CPU, as long as torch itself): every ``run`` and every worker would pay it.
    torchvision stays for downloading; ``tests/test_models_data.py`` compares the two readers.
    """
    data = path.read_bytes()
    header = 4 + 4 * len(shape)
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != 0x0800 + len(shape):  # 0x08: unsigned bytes; then the number of dimensions
        raise UserError(f"Fashion-MNIST file {str(path)!r} is corrupted: not an IDX file of {len(shape)}-dimensional bytes")
    found = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(len(shape)))
    if found != shape or len(data) != header + math.prod(shape):
        raise UserError(f"Fashion-MNIST file {str(path)!r} is truncated or corrupted: {len(data):,} bytes "
                        f"for shape {found}, expected {header + math.prod(shape):,} bytes for {shape}")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header).view(shape)


def _load_official(root: Path, *, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    part = "train" if train else "test"
    raw = root / "FashionMNIST" / "raw"
    (images, image_shape), (labels, label_shape) = _FILES[train]
    if download and not all((raw / name).is_file() for name in (images, labels)):
        from torchvision.datasets import FashionMNIST  # noqa: PLC0415  (slow to import; only downloading needs it)

        try:
            FashionMNIST(root=str(root), train=train, download=True)
        except Exception as exc:  # torchvision raises RuntimeError/ValueError/AssertionError on bad files
            first = f"{exc}".strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot read Fashion-MNIST {part} files under {str(root)!r}: {first}; offline? pass "
                            f"--data-dir DIR or set {DATA_DIR_ENV}=DIR, the folder holding FashionMNIST/raw/") from exc
    missing = [name for name in (images, labels) if not (raw / name).is_file()]
    if missing:
        raise UserError(f"cannot read Fashion-MNIST {part} files under {str(root)!r}: {raw / missing[0]} is missing")
    x, y = read_idx(raw / images, image_shape), read_idx(raw / labels, label_shape).long()
    if int(y.max()) > 9:
        raise UserError(f"Fashion-MNIST {part} labels under {str(root)!r} are corrupted: a label above 9")
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
