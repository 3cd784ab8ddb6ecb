"""What training costs, counted rather than timed: a Pareto front must not move with machine load.

FLOPs come from torch's ``FlopCounterMode`` on the real model, the real batch and the real method: the
first time a piece of work is seen under a key that names what fixes its shapes (the batch's shapes, the
schedule's phase), it runs under the counter; after that its count is reused, so counting costs one counted
step per distinct shape, not a slower loop.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from lrpo_study.tasks import batch_len

__all__ = ["FlopCounter", "batch_tokens", "shape_key"]


def shape_key(batch: Any) -> Hashable:
    """What fixes a batch's compute: the shapes and dtypes of its tensors."""
    if isinstance(batch, torch.Tensor):
        return (tuple(batch.shape), batch.dtype)
    if isinstance(batch, Mapping):
        return tuple((k, shape_key(v)) for k, v in sorted(batch.items()))
    if isinstance(batch, (tuple, list)):
        return tuple(shape_key(v) for v in batch)
    return type(batch).__name__


def batch_tokens(batch: Any) -> int:
    """Tokens in a batch of sequences: the ones of a dict batch's ``attention_mask`` (padding is not a token),
    else the elements of its ``input_ids``; the input's elements of an (inputs, targets) pair."""
    if isinstance(batch, Mapping):
        mask = batch.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            return int(mask.sum())
        return int(batch["input_ids"].numel()) if "input_ids" in batch else batch_len(batch)
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(x.numel()) if x.dim() >= 2 and not x.is_floating_point() else batch_len(batch)


class FlopCounter:
    """Per-key FLOP counts of repeated work: ``with counter.measure(key): ...`` counts the block the first
    time ``key`` is seen and does nothing after; ``counter[key]`` is the count. ``extra`` accumulates work
    that happens once (an LRPO probe), counted every time."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled  # off: nothing is counted and every count is 0 (the benchmark's reference)
        self._flops: dict[Hashable, int] = {}
        self.spent = 0  # FLOPs of the work done under ``count`` since the last ``take``

    @property
    def counted(self) -> bool:
        """Whether anything has been counted yet."""
        return bool(self._flops)

    def __getitem__(self, key: Hashable) -> int:
        return self._flops[key] if self.enabled else 0

    def measure(self, key: Hashable) -> Any:
        return nullcontext() if key in self._flops or not self.enabled else self._counting(key)

    @contextmanager
    def _counting(self, key: Hashable) -> Iterator[None]:
        with FlopCounterMode(display=False) as mode:
            yield  # an exception (a pruned or interrupted step) leaves the key uncounted
        self._flops[key] = int(mode.get_total_flops())

    @contextmanager
    def count(self, key: Hashable) -> Iterator[None]:
        """Like ``measure``, and the block's FLOPs are added to ``spent``: a method's extra work (LRPO's probe
        steps and predictor fit), repeated with the same shapes, costs one counted repetition."""
        with self.measure(key):
            yield
        self.spent += self[key]

    def take(self) -> int:
        """``spent``, reset to 0."""
        spent, self.spent = self.spent, 0
        return spent
