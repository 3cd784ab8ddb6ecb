"""PyTorch Lightning: our schedules in ``configure_optimizers``, for every method.

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        schedule = lrpo_study.load_schedule("best.json", optimizer, params=self.parameters(),
                                            steps_per_epoch=self.trainer.num_training_batches)
        return {"optimizer": optimizer, "lr_scheduler": lr_scheduler_config(schedule)}

    trainer = lightning.Trainer(max_epochs=..., callbacks=[ScheduleCallback()])

Log ``"val_loss"`` in ``validation_step`` (GreedyLR per epoch monitors it; pass
``val_loss="your_key"`` otherwise). ``ScheduleCallback`` hands every training
loss to the schedule before backward: the curvature schedule reads its graph,
and schedules that monitor the training loss (LRPO, GreedyLR per step) its value.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from ..schedules import Schedule, ScheduleHooks

__all__ = ["ScheduleCallback", "lr_scheduler_config"]


def lr_scheduler_config(schedule: Schedule, *, val_loss: str = "val_loss") -> dict[str, Any]:
    """The ``lr_scheduler`` entry of ``configure_optimizers``' return value for ``schedule``."""
    if not isinstance(schedule, ScheduleHooks):
        raise TypeError(f"expected a schedule from lrpo_study.load_schedule, got {type(schedule).__name__}")
    config: dict[str, Any] = {"scheduler": schedule, "interval": schedule.interval, "frequency": 1}
    if schedule.monitor == "val_loss":
        config.update(reduce_on_plateau=True, monitor=val_loss, strict=True)
    else:
        # Lightning calls step() with no value; a training-loss monitor uses the losses the callback handed it.
        config["reduce_on_plateau"] = False
    return config


class ScheduleCallback(Callback):
    """Hands each training loss to the lrpo_study schedules of the module's optimizers, before backward."""

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        for config in trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, ScheduleHooks):
                config.scheduler.observe(loss)
