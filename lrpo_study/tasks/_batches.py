"""Data as a ``Dataset``: items and batches of any structure (a tensor, a tuple or a dict of tensors).

The tensor-pair path (``Task.train = (inputs, targets)``, index slices on the device) is the fast
path and is untouched by this module. A map-style ``Dataset`` goes through a ``DataLoader`` whose
order is the loop's seeded permutation and whose workers are seeded from (seed, epoch): per-sample
augmentation draws fresh randomness every epoch, and the same seed reproduces every batch.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from ._identity import hash_tensor

Batch = Any  # a tensor pair, a tuple of tensors or a dict of str -> tensor


def _leaf(value: Any) -> bool:
    """What ``default_collate`` stacks into one tensor: a tensor, a number (a torchvision dataset's class
    index is an ``int``), a NumPy array or scalar."""
    return isinstance(value, (torch.Tensor, numbers.Number)) and not isinstance(value, bool) or (
        type(value).__module__ == "numpy" and type(value).__name__ == "ndarray")


def describe_item(item: Any) -> str | None:
    """None for an item the loop can batch (a tensor, or a tuple/list or dict of what ``default_collate``
    stacks into tensors: tensors, numbers, NumPy arrays), else what it is."""
    if isinstance(item, torch.Tensor):
        return None
    if isinstance(item, (tuple, list)) and item and all(_leaf(t) for t in item):
        return None
    if isinstance(item, Mapping) and item and all(isinstance(k, str) and _leaf(v) for k, v in item.items()):
        return None
    if isinstance(item, (tuple, list)):
        return f"a {type(item).__name__} of {', '.join(type(t).__name__ for t in item) or 'nothing'}"
    if isinstance(item, Mapping):
        return f"a dict of {', '.join(f'{k}: {type(v).__name__}' for k, v in item.items()) or 'nothing'}"
    return f"a {type(item).__name__}"


def check_dataset(name: str, data: Any) -> None:
    if isinstance(data, DataLoader):
        raise TypeError(f"Task.{name} must be a Dataset (the loop makes the DataLoader, seeded), got a DataLoader")
    if not isinstance(data, Dataset) or not hasattr(data, "__len__"):
        raise TypeError(f"Task.{name} must be a pair (inputs, targets) of tensors or a map-style Dataset, "
                        f"got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"Task.{name} is an empty Dataset")
    with torch.random.fork_rng(devices=[]):  # looking at an item must not move the run's randomness
        problem = describe_item(data[0])
    if problem is not None:
        raise TypeError(f"Task.{name}'s items must be tensors, or tuples or dicts of tensors, numbers or NumPy arrays, "
                        f"got {problem}")


def dataset_fingerprint(data: Dataset, *, samples: int = 64) -> str:
    """The Dataset's class, length and ``samples`` evenly spaced items drawn under a fixed seed
    (augmentation included): another dataset, length or transform gives another fingerprint."""
    digest = hashlib.sha256(f"{type(data).__module__}.{type(data).__qualname__};{len(data)};".encode())  # type: ignore[arg-type]
    n = len(data)  # type: ignore[arg-type]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for i in sorted({round(k * (n - 1) / max(1, samples - 1)) for k in range(min(samples, n))}):
            for t in _tensors(data[i]):
                hash_tensor(digest, t, str(i))
    return digest.hexdigest()[:32]


def _tensors(item: Any) -> list[torch.Tensor]:
    if isinstance(item, torch.Tensor):
        return [item]
    if isinstance(item, Mapping):
        return [torch.as_tensor(item[k]) for k in sorted(item)]
    return [torch.as_tensor(t) for t in item]


def to_device(batch: Batch, device: torch.device, *, non_blocking: bool = False) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
    return type(batch)(t.to(device, non_blocking=non_blocking) for t in batch)


def batch_len(batch: Batch) -> int:
    """Samples in a batch: the leading dimension of its first tensor."""
    return len(_tensors(batch)[0])


def collate(data: Dataset, indices: Sequence[int]) -> Batch:
    return default_collate([data[i] for i in indices])


def loader(data: Dataset, *, order: Sequence[int] | None, batch_size: int, num_workers: int, seed: int,
           device: torch.device) -> DataLoader:
    """Batches of ``data`` in ``order`` (None: in index order); worker RNGs from ``seed``."""
    return DataLoader(
        data, batch_size=batch_size, sampler=order, shuffle=False, num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed), pin_memory=device.type == "cuda", drop_last=False,
    )
