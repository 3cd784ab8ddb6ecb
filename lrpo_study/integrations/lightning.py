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

import optuna
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lrpo_study import metrics as vocabulary
from lrpo_study.schedules import Schedule, ScheduleHooks
from lrpo_study.study.trial_run import StepCount, TrialRun, TrialRunError

__all__ = ["ScheduleCallback", "TrialCallback", "lr_scheduler_config"]


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


class TrialCallback(ScheduleCallback):
    """A Lightning fit as a study's trial: after each validation epoch, hands ``run`` the logged validation
    metrics (``val_loss``, ``val_accuracy`` and any other ``val_*`` you log) and the epoch's mean training loss (what
    ``training_step`` returned: your loss, label smoothing and all); stops the fit when the trial is pruned
    (``run.finish()`` then raises ``optuna.TrialPruned``). It counts each training step's cost
    (``run.count_step``: FLOPs, samples, a dict batch's tokens), so a study may minimize ``train_flops``.
    It also does ``ScheduleCallback``'s work.

        def configure_optimizers(self):
            optimizer = run.make_optimizer(self.parameters())
            steps = int(self.trainer.estimated_stepping_batches) // run.epochs  # loads the training data
            schedule = run.make_schedule(optimizer, steps_per_epoch=steps, params=self.parameters())
            return {"optimizer": optimizer, "lr_scheduler": lr_scheduler_config(schedule)}

        trainer = lightning.Trainer(max_epochs=run.epochs, callbacks=[TrialCallback(run)])
        trainer.fit(module, train_loader, val_loader)
        return run.finish()
    """

    def __init__(self, run: TrialRun, *, val_loss: str = "val_loss", val_accuracy: str = "val_accuracy") -> None:
        self.run, self.val_loss, self.val_accuracy = run, val_loss, val_accuracy
        self._losses: list[float] = []
        self._step: StepCount | None = None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._losses = []

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        # Each batch's step (training_step, backward, optimizer step) is counted: FLOPs once per batch shape,
        # samples (and a dict batch's tokens) always.
        self._step = self.run.count_step(batch)
        self._step.start()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._step is not None:
            self._step.stop()
            self._step = None
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._losses.append(float(loss.detach()))

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self._step is not None:
            self._step.stop(completed=False)
            self._step = None

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not self._losses:
            return
        metrics = trainer.callback_metrics
        if self.val_loss not in metrics:
            raise TrialRunError(f"the validation metrics {sorted(metrics)} lack {self.val_loss!r}: log it in "
                                "validation_step, or name yours with TrialCallback(run, val_loss=...)")
        accuracy = metrics.get(self.val_accuracy)
        others = {k: float(v) for k, v in metrics.items() if k.startswith("val_") and k not in (self.val_loss, self.val_accuracy)
                  and vocabulary.is_metric_name(k)}  # val_f1 and the like, as logged
        try:
            self.run.report(
                train_loss=sum(self._losses) / len(self._losses), val_loss=float(metrics[self.val_loss]),
                val_accuracy=None if accuracy is None else float(accuracy), **others,
            )
        except optuna.TrialPruned:
            trainer.should_stop = True  # the fit ends after this epoch; run.finish() raises TrialPruned
        self._losses = []
