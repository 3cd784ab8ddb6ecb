"""``Task``: what is trained, on what, scored how. The one loop takes nothing else about a workload."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ._identity import model_identity

Pair = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(output: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over every position: (N, C) vs (N,) and (N, T, V) vs (N, T) alike."""
    return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1).long(), reduction=reduction)


def _check_pair(name: str, pair: Any) -> Pair:
    if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(t, torch.Tensor) for t in pair)):
        raise TypeError(f"Task.{name} must be a pair (inputs, targets) of tensors, got {type(pair).__name__}")
    x, y = pair
    if x.dim() == 0 or y.dim() == 0 or len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"Task.{name} needs inputs and targets with the same non-empty leading (sample) dimension, "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    return x, y


def data_fingerprint(*pairs: Pair | None) -> str:
    """sha256 over the shapes, dtypes and bytes of every tensor: equal data, equal fingerprint."""
    digest = hashlib.sha256()
    for pair in pairs:
        for t in pair or ():
            t = t.detach().cpu().contiguous()
            digest.update(f"{tuple(t.shape)}{t.dtype};".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


@dataclass(frozen=True, kw_only=True)
class Task:
    """A workload for the one loop.

    ``build_model()`` is called after the loop seeds torch. ``train``, ``val``
    and the optional ``test`` are ``(inputs, targets)`` tensors with a leading
    sample dimension; the loop keeps them on the device and draws batches as
    index slices of a seeded permutation. ``loss(output, targets)`` returns a
    mean (cross-entropy over the last dimension by default). With
    ``has_accuracy``, accuracy is argmax over the last dimension against the
    targets (per token for a language model). ``fingerprint`` is what the
    trajectory cache and checkpoints key on; by default a hash of the data.
    ``options`` records how a factory made the task (set by ``load_task``).
    ``epoch_size``: samples per epoch, drawn without replacement from a fresh
    permutation of ``train`` each epoch (None: all of them). ``eval_batch``:
    samples per forward pass when evaluating. ``decay_matrices_only``: weight
    decay applies to parameters with two or more dimensions only (not to
    biases, norms), as transformer recipes do. ``defaults``: the hyperparameters this
    workload trains with unless told otherwise (its recipe: batch size, optimizer, lr,
    ...); ``run --set`` and a study's ``[fixed]``/``[search]`` override them.
    """

    build_model: Callable[[], nn.Module]
    train: Pair
    val: Pair
    test: Pair | None = None
    loss: LossFn | None = None
    name: str = "custom"
    has_accuracy: bool = True
    fingerprint: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    epoch_size: int | None = None
    eval_batch: int = 8192
    decay_matrices_only: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not callable(self.build_model):
            raise TypeError(f"Task.build_model must be callable, got {type(self.build_model).__name__}")
        _check_pair("train", self.train)
        _check_pair("val", self.val)
        if self.test is not None:
            _check_pair("test", self.test)
        if self.loss is not None and not callable(self.loss):
            raise TypeError(f"Task.loss must be callable or None, got {type(self.loss).__name__}")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Task.name must be a non-empty string, got {self.name!r}")
        if self.epoch_size is not None and not 1 <= self.epoch_size <= len(self.train[0]):
            raise ValueError(f"Task.epoch_size must be in [1, {len(self.train[0])}] or None, got {self.epoch_size}")
        if not isinstance(self.defaults, Mapping) or not all(isinstance(k, str) for k in self.defaults):
            raise TypeError(f"Task.defaults must map hyperparameter names to values, got {type(self.defaults).__name__}")
        if self.eval_batch < 1:
            raise ValueError(f"Task.eval_batch must be >= 1, got {self.eval_batch}")
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", data_fingerprint(self.train, self.val, self.test))

    def model_identity(self, *, seed: int) -> str:
        """The identity of the model this task builds after ``torch.manual_seed(seed)`` (structure,
        ``forward`` code, initial parameters) and of its loss: cache and checkpoint keys name it."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.build_model()
        return model_identity(model, self.loss_fn)

    @property
    def samples_per_epoch(self) -> int:
        return self.epoch_size or len(self.train[0])

    @property
    def loss_fn(self) -> LossFn:
        return self.loss or cross_entropy

    def to(self, device: torch.device | str) -> Task:
        """The same task with its data on ``device`` (no copy where it already is)."""
        def move(pair: Pair) -> Pair:
            return pair[0].to(device), pair[1].to(device)

        test = None if self.test is None else move(self.test)
        return dataclasses.replace(self, train=move(self.train), val=move(self.val), test=test)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, pair: Pair, *, chunk: int | None = None) -> tuple[float, float | None]:
        """Mean loss and accuracy (a fraction, or None without accuracy) of ``model`` on ``pair``."""
        chunk = chunk or self.eval_batch
        model.eval()
        x, y = pair
        loss_sum = torch.zeros((), device=x.device)
        correct = torch.zeros((), device=x.device, dtype=torch.long)
        for i in range(0, len(x), chunk):
            out, target = model(x[i:i + chunk]), y[i:i + chunk]
            if self.loss is None:  # summed exactly, then a mean over every position
                loss_sum += cross_entropy(out, target, reduction="sum") / (target.numel() / len(target))
            else:  # a user's loss is a mean over its chunk
                loss_sum += self.loss(out, target) * len(target)
            if self.has_accuracy:
                correct += (out.argmax(-1) == target).sum()
        accuracy = int(correct) / y.numel() if self.has_accuracy else None
        return float(loss_sum) / len(x), accuracy
