"""``Task``: what is trained, on what, scored how. The one loop takes nothing else about a workload."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from lrpo_study import metrics as vocabulary

from ._batches import Batch, batch_len, check_dataset, dataset_fingerprint, loader, to_device
from ._identity import hash_tensor, model_identity

Pair = tuple[torch.Tensor, torch.Tensor]
Data = Pair | Dataset  # type: ignore[type-arg]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ComputeLoss = Callable[[nn.Module, Batch], torch.Tensor]
MetricFn = Callable[[torch.Tensor, torch.Tensor], float]
IGNORE_INDEX = -100  # label positions transformers leaves out of the loss (and we out of accuracy)


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
            hash_tensor(digest, t)
    return digest.hexdigest()[:32]


def _check_data(name: str, data: Any) -> None:
    if isinstance(data, tuple):
        _check_pair(name, data)
    else:
        check_dataset(name, data)


def _fingerprint(*parts: Data | None) -> str:
    if all(p is None or isinstance(p, tuple) for p in parts):
        return data_fingerprint(*parts)  # type: ignore[arg-type]
    pieces = [data_fingerprint(p) if isinstance(p, tuple) else "-" if p is None else dataset_fingerprint(p) for p in parts]
    return hashlib.sha256(";".join(pieces).encode()).hexdigest()[:32]


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

    Beside tensor pairs, ``train``/``val``/``test`` may be map-style Datasets whose items
    are tensors, tuples or dicts of tensors (per-sample transforms inside, as torchvision's
    do); the loop batches them through a DataLoader in its seeded order, with
    ``num_workers`` worker processes seeded from (seed, epoch). Evaluation reads val/test
    in order: give them a Dataset without random augmentation. How a batch becomes a loss:
    ``compute_loss(model, batch)`` when given; else ``loss(model(x), y)`` for a pair, and
    the model's own ``output.loss`` for a dict batch (transformers' convention, called as
    ``model(**batch)``); accuracy of a dict batch compares ``output.logits`` with
    ``batch["labels"]`` per token, ignoring -100 (shifted by one for a causal language model).

    ``metrics``: more validation metrics, ``{"f1": fn}`` with ``fn(outputs, targets) -> float`` called once per
    evaluation on the split's model outputs and targets (concatenated over its batches; a dict batch's
    ``output.logits`` and ``labels``); each is recorded as the curve ``val_<name>`` (``test_<name>`` when
    ``confirm`` scores the test split) and may be a study's objective (``"max:final_val_f1"``).
    ``sequence``: samples are sequences, so training also counts tokens (``train_tokens``).
    """

    build_model: Callable[[], nn.Module]
    train: Data
    val: Data
    test: Data | None = None
    loss: LossFn | None = None
    compute_loss: ComputeLoss | None = None
    name: str = "custom"
    has_accuracy: bool = True
    fingerprint: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    epoch_size: int | None = None
    eval_batch: int = 8192
    decay_matrices_only: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    num_workers: int = 0
    metrics: Mapping[str, MetricFn] = field(default_factory=dict)
    sequence: bool = False

    def __post_init__(self) -> None:
        if not callable(self.build_model):
            raise TypeError(f"Task.build_model must be callable, got {type(self.build_model).__name__}")
        _check_data("train", self.train)
        _check_data("val", self.val)
        if self.test is not None:
            _check_data("test", self.test)
        for name in ("loss", "compute_loss"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise TypeError(f"Task.{name} must be callable or None, got {type(getattr(self, name)).__name__}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"Task.num_workers must be an integer >= 0, got {self.num_workers!r}")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Task.name must be a non-empty string, got {self.name!r}")
        if self.epoch_size is not None and not 1 <= self.epoch_size <= self.train_size:
            raise ValueError(f"Task.epoch_size must be in [1, {self.train_size}] or None, got {self.epoch_size}")
        if not isinstance(self.defaults, Mapping) or not all(isinstance(k, str) for k in self.defaults):
            raise TypeError(f"Task.defaults must map hyperparameter names to values, got {type(self.defaults).__name__}")
        if self.eval_batch < 1:
            raise ValueError(f"Task.eval_batch must be >= 1, got {self.eval_batch}")
        if not isinstance(self.metrics, Mapping):
            raise TypeError(f"Task.metrics must map names to functions, got {type(self.metrics).__name__}")
        for name, fn in self.metrics.items():
            if not vocabulary.is_metric_name(name) or f"val_{name}" in vocabulary.CURVES:
                raise ValueError(f"Task.metrics: {name!r} must be a lowercase identifier other than loss and accuracy")
            if not callable(fn):
                raise TypeError(f"Task.metrics[{name!r}] must be callable(outputs, targets) -> float, got {type(fn).__name__}")
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", _fingerprint(self.train, self.val, self.test))

    def curves(self) -> tuple[str, ...]:
        """The curves a trial of this task records, one value per epoch (``lrpo_study.metrics``)."""
        m = vocabulary
        quality = (m.VAL_LOSS, *([m.VAL_ACCURACY] if self.has_accuracy else []), *(f"val_{k}" for k in self.metrics))
        costs = (m.SECONDS, m.FLOPS, m.EVAL_FLOPS, m.SAMPLES, *([m.TOKENS] if self.sequence else []))
        return (m.TRAIN_LOSS, *quality, m.LR, *costs)

    def model_identity(self, *, seed: int) -> str:
        """The identity of the model this task builds after ``torch.manual_seed(seed)`` (structure,
        ``forward`` code, initial parameters) and of its loss: cache and checkpoint keys name it."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.build_model()
        return model_identity(model, self.compute_loss or self.loss_fn)

    @property
    def train_size(self) -> int:
        return len(self.train[0]) if isinstance(self.train, tuple) else len(self.train)  # type: ignore[arg-type]

    @property
    def samples_per_epoch(self) -> int:
        return self.epoch_size or self.train_size

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimizer steps in an epoch (the last batch may be short)."""
        return math.ceil(self.samples_per_epoch / batch_size)

    @property
    def loss_fn(self) -> LossFn:
        return self.loss or cross_entropy

    def to(self, device: torch.device | str) -> Task:
        """The same task with its tensor pairs on ``device`` (no copy where they already are);
        Datasets stay where they are and their batches move."""
        def move(data: Data) -> Data:
            return (data[0].to(device), data[1].to(device)) if isinstance(data, tuple) else data

        test = None if self.test is None else move(self.test)
        return dataclasses.replace(self, train=move(self.train), val=move(self.val), test=test)

    def batch_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The mean loss of one batch, with its graph (see the class docstring for the rules)."""
        if self.compute_loss is not None:
            return self.compute_loss(model, batch)
        if isinstance(batch, dict):
            return _own_loss(model(**batch))
        x, y = batch
        return self.loss_fn(model(x), y)

    def score(self, model: nn.Module, data: Data, *, split: str = "val") -> dict[str, float]:
        """Every metric of ``model`` on ``data`` as curve names: ``val_loss``, ``val_accuracy`` (with accuracy),
        ``val_<name>`` for each of ``metrics`` (``split`` replaces "val")."""
        outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        loss, accuracy = self.evaluate(model, data, keep=outputs if self.metrics else None)
        scores = {f"{split}_loss": loss, **({} if accuracy is None else {f"{split}_accuracy": accuracy})}
        if self.metrics:
            try:
                out, target = torch.cat([o for o, _ in outputs]), torch.cat([t for _, t in outputs])
            except RuntimeError as exc:
                raise ValueError(f"Task.metrics needs outputs of one shape across evaluation batches: {exc}") from None
            for name, fn in self.metrics.items():
                value = fn(out, target)
                if isinstance(value, torch.Tensor):
                    value = value.item()
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TypeError(f"Task.metrics[{name!r}] must return a number, got {type(value).__name__}")
                scores[f"{split}_{name}"] = float(value)
        return scores

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, data: Data, *, chunk: int | None = None, keep: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[float, float | None]:
        """Mean loss and accuracy (a fraction, or None without accuracy) of ``model`` on ``data``; ``keep``
        collects each chunk's (outputs, targets) for ``metrics``."""
        chunk = chunk or self.eval_batch
        model.eval()
        if not isinstance(data, tuple):
            return self._evaluate_dataset(model, data, chunk, keep)
        x, y = data
        loss_sum = torch.zeros((), device=x.device)
        correct = torch.zeros((), device=x.device, dtype=torch.long)
        for i in range(0, len(x), chunk):
            out, target = model(x[i:i + chunk]), y[i:i + chunk]
            if keep is not None:
                keep.append((out, target))
            if self.loss is None:  # summed exactly, then a mean over every position
                loss_sum += cross_entropy(out, target, reduction="sum") / (target.numel() / len(target))
            else:  # a user's loss is a mean over its chunk
                loss_sum += self.loss(out, target) * len(target)
            if self.has_accuracy:
                correct += (out.argmax(-1) == target).sum()
        accuracy = int(correct) / y.numel() if self.has_accuracy else None
        return float(loss_sum) / len(x), accuracy

    def _evaluate_dataset(
        self, model: nn.Module, data: Dataset, chunk: int, keep: list[tuple[torch.Tensor, torch.Tensor]] | None,  # type: ignore[type-arg]
    ) -> tuple[float, float | None]:
        device = next(model.parameters()).device
        loss_sum, weight, correct, counted = 0.0, 0, 0, 0
        for batch in loader(data, order=None, batch_size=chunk, num_workers=self.num_workers, seed=0, device=device):
            batch = to_device(batch, device, non_blocking=True)
            if isinstance(batch, dict):
                out = model(**batch)
                labels = batch.get("labels")
                n = int((labels != IGNORE_INDEX).sum()) if labels is not None else batch_len(batch)
                loss = self.compute_loss(model, batch) if self.compute_loss is not None else _own_loss(out)
                if self.has_accuracy:
                    c, k = _token_accuracy(model, out, labels)
                    correct, counted = correct + c, counted + k
                if keep is not None and labels is not None:
                    keep.append((out.logits, labels))
            else:
                x, y = batch
                n = len(y)
                out = model(x)
                if keep is not None:
                    keep.append((out, y))
                loss = self.compute_loss(model, batch) if self.compute_loss is not None else self.loss_fn(out, y)
                if self.has_accuracy:
                    correct, counted = correct + int((out.argmax(-1) == y).sum()), counted + y.numel()
            loss_sum += float(loss) * n
            weight += n
        accuracy = (correct / counted if counted else 0.0) if self.has_accuracy else None
        return loss_sum / weight, accuracy


def _own_loss(output: Any) -> torch.Tensor:
    loss = getattr(output, "loss", None)
    if loss is None and isinstance(output, Mapping):
        loss = output.get("loss")
    if not isinstance(loss, torch.Tensor):
        raise TypeError(
            "a dict batch needs a model whose output carries .loss (transformers' convention: pass labels) "
            f"or Task.compute_loss(model, batch); the model returned {type(output).__name__}"
        )
    return loss


def _token_accuracy(model: nn.Module, output: Any, labels: torch.Tensor | None) -> tuple[int, int]:
    logits = getattr(output, "logits", None)
    if logits is None or labels is None:
        raise TypeError("accuracy of a dict batch needs output.logits and batch['labels'] (or has_accuracy=False)")
    name = type(model).__name__
    if getattr(getattr(model, "config", None), "is_decoder", False) or "CausalLM" in name or "LMHead" in name:
        logits, labels = logits[..., :-1, :], labels[..., 1:]  # a causal LM predicts the next token
    keep = labels != IGNORE_INDEX
    return int(((logits.argmax(-1) == labels) & keep).sum()), int(keep.sum())
