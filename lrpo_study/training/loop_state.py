"""Everything the loop carries between epochs, and its snapshot (checkpoints and the trajectory cache store it)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from lrpo_study.schedules import Schedule

from .compute import FlopCounter


@dataclass
class LoopState:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    perm_gen: torch.Generator  # the batch order's generator
    curves: dict[str, list[float]]
    epoch: int = 0  # epochs finished
    step: int = 0  # batches finished
    lr_history: list[list[float]] = field(default_factory=list)  # every group's lr, per epoch
    train_seconds: list[float] = field(default_factory=list)  # per epoch, schedule steps excluded
    train_flops: list[int] = field(default_factory=list)  # per epoch, schedule steps excluded
    cached_epochs: int = 0
    counter: FlopCounter = field(default_factory=FlopCounter)  # the schedule's extra work between epochs counts here

    def snapshot(self) -> dict[str, Any]:
        """Plain tensors and containers only, so ``torch.load(weights_only=True)`` reads it back."""
        return copy.deepcopy({
            "epoch": self.epoch, "step": self.step, "lr_history": self.lr_history, "train_seconds": self.train_seconds,
            "train_flops": self.train_flops,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "perm_rng": self.perm_gen.get_state(), "curves": self.curves,
        })

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        self.model.load_state_dict(snapshot["model"])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        self.schedule.load_state_dict(copy.deepcopy(snapshot["schedule"]))
        torch.set_rng_state(snapshot["torch_rng"])
        if snapshot["cuda_rng"]:
            torch.cuda.set_rng_state_all(snapshot["cuda_rng"])
        self.perm_gen.set_state(snapshot["perm_rng"])
        self.curves = copy.deepcopy(dict(snapshot["curves"]))
        self.epoch, self.step = int(snapshot["epoch"]), int(snapshot["step"])
        self.lr_history = copy.deepcopy(list(snapshot["lr_history"]))
        self.train_seconds = list(snapshot["train_seconds"])
        self.train_flops = list(snapshot["train_flops"])

    def epoch_step(self, train_loss: float, val_loss: float, sync: Callable[[], None]) -> tuple[float, int]:
        """Step an epoch-interval schedule with the loss it monitors; return the seconds it took and the FLOPs
        it computed (LRPO's probes and predictor; nothing for most schedules)."""
        start = time.perf_counter()
        self.counter.take()
        self.schedule.epoch_end(val_loss=val_loss, train_loss=train_loss)
        flops = self.counter.take()
        sync()
        return time.perf_counter() - start, flops
