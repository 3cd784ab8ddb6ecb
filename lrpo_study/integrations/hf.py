"""Hugging Face ``Trainer``: our schedules, for every method.

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    schedule = lrpo_study.load_schedule("best.json", optimizer, params=model.parameters(),
                                        steps_per_epoch=steps_per_epoch)
    callback = ScheduleCallback(schedule)
    trainer = Trainer(model=model, args=TrainingArguments(..., num_train_epochs=schedule.epochs,
                      eval_strategy="epoch"), optimizers=(optimizer, callback.scheduler), callbacks=[callback])

The Trainer steps a scheduler after every optimizer step, except
``ReduceLROnPlateau``-like ones, which it steps after evaluation with
``metric_for_best_model``. That is right for the schedules that are a function
of the step (fixed, cosine, one-cycle, curvature): ``callback.scheduler`` is the
schedule itself. For value-driven ones (GreedyLR, LRPO), ``callback.scheduler``
leaves the lr alone and the callback steps the schedule at the right moment
with the right value: after each step (GreedyLR per step: the training loss),
at each epoch's end (LRPO: the epoch's mean training loss), after each
evaluation (GreedyLR per epoch: ``eval_loss``; evaluate once per epoch).

The callback reads the training loss from the model's output (``outputs.loss``,
as Hugging Face models compute it when given labels), before backward, so the
curvature schedule sees its graph.
"""

from __future__ import annotations

from typing import Any

import optuna
import torch
from torch.optim.lr_scheduler import LRScheduler
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from lrpo_study import metrics as vocabulary
from lrpo_study.schedules import CurvatureLR, MetricSchedule, Schedule, ScheduleHooks
from lrpo_study.study.trial_run import StepCount, TrialRun, TrialRunError

__all__ = ["ScheduleCallback", "TrialCallback"]


class _LeavesLrAlone(LRScheduler):
    """What the Trainer steps after every batch while the callback steps a value-driven schedule."""

    def __init__(self, schedule: MetricSchedule) -> None:
        self.schedule = schedule
        super().__init__(schedule.optimizer)

    def get_lr(self) -> list[float | torch.Tensor]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float | torch.Tensor]:
        return self.get_lr()  # the Trainer logs this after the callback has stepped the schedule

    def state_dict(self) -> dict[str, Any]:
        return self.schedule.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state_dict)


def _loss_of(output: Any) -> torch.Tensor | None:
    loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
    return loss if isinstance(loss, torch.Tensor) else None


class ScheduleCallback(TrainerCallback):
    """Steps ``schedule`` the way it was tuned, inside a ``Trainer``; see the module docstring."""

    def __init__(self, schedule: Schedule) -> None:
        if not isinstance(schedule, ScheduleHooks):
            raise TypeError(f"expected a schedule from lrpo_study.load_schedule, got {type(schedule).__name__}")
        self.schedule = schedule
        self.scheduler: LRScheduler = _LeavesLrAlone(schedule) if isinstance(schedule, MetricSchedule) else schedule
        self._drives = isinstance(schedule, MetricSchedule)
        self._needs_loss = isinstance(schedule, CurvatureLR) or schedule.monitor == "train_loss"
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.schedule.monitor == "val_loss" and str(args.eval_strategy) in ("no", "IntervalStrategy.NO"):
            raise ValueError(
                f"{type(self.schedule).__name__} per epoch monitors the validation loss: "
                "set TrainingArguments(eval_strategy='epoch') and pass an eval_dataset"
            )
        model = kwargs.get("model")
        if self._needs_loss and model is not None:
            self._handle = model.register_forward_hook(self._observe)

    def _observe(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if not module.training:
            return
        loss = _loss_of(output)
        if loss is None:
            raise ValueError(
                f"{type(self.schedule).__name__} needs the training loss, but the model's output has none: "
                "give the model labels so that it returns outputs.loss"
            )
        self.schedule.observe(loss)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self._drives and self.schedule.interval == "step":
            self.schedule.step()

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self._drives and self.schedule.interval == "epoch" and self.schedule.monitor == "train_loss":
            self.schedule.step()

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not (self._drives and self.schedule.monitor == "val_loss"):
            return
        metrics = kwargs.get("metrics") or {}
        if "eval_loss" not in metrics:
            raise ValueError(f"{type(self.schedule).__name__} monitors eval_loss, but the evaluation gave {sorted(metrics)}")
        self.schedule.step(metrics["eval_loss"])

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class TrialCallback(ScheduleCallback):
    """A Hugging Face ``Trainer`` run as a study's trial: on each evaluation, hands ``run`` the evaluation's
    ``eval_loss`` (``eval_accuracy`` and any other ``eval_<name>`` that ``compute_metrics`` gives, as ``val_<name>``)
    and the mean of the training losses the Trainer logged since the last one; counts each optimizer step's
    cost (``run.count_step`` on the model's training inputs: FLOPs once per batch shape, samples, tokens), so a
    study may minimize ``train_flops`` or ``train_tokens``; stops training when the trial is pruned
    (``run.finish()`` then raises ``optuna.TrialPruned``). It also steps ``schedule`` like ``ScheduleCallback``.

        optimizer = run.make_optimizer(model.parameters())
        schedule = run.make_schedule(optimizer, steps_per_epoch=steps_per_epoch, params=model.parameters())
        callback = TrialCallback(run, schedule)
        args = TrainingArguments(..., num_train_epochs=run.epochs, eval_strategy="epoch", logging_strategy="epoch")
        Trainer(model=model, args=args, optimizers=(optimizer, callback.scheduler), callbacks=[callback], ...).train()
        return run.finish()
    """

    def __init__(self, run: TrialRun, schedule: Schedule) -> None:
        super().__init__(schedule)
        self.run = run
        self._losses: list[float] = []
        self._step: StepCount | None = None
        self._counting: torch.utils.hooks.RemovableHandle | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        super().on_train_begin(args, state, control, **kwargs)
        model = kwargs.get("model")
        if model is not None:
            self._counting = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module: torch.nn.Module, args: Any, kwargs: Any) -> None:
        """Each training forward: the first of an optimizer step starts counting the step (its FLOPs once per
        batch shape), later ones (gradient accumulation) add their samples and tokens; ``on_step_end`` stops."""
        if not module.training:
            return
        batch = dict(kwargs) if kwargs else args[0]
        if self._step is None:
            self._step = self.run.count_step(batch)
            self._step.start()
        else:
            self._step.more(batch)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self._step is not None:
            self._step.stop()
            self._step = None
        super().on_step_end(args, state, control, **kwargs)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self._step is not None:  # a step cut short
            self._step.stop(completed=False)
            self._step = None
        if self._counting is not None:
            self._counting.remove()
            self._counting = None
        super().on_train_end(args, state, control, **kwargs)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        logs = kwargs.get("logs") or {}
        if "loss" in logs:
            self._losses.append(float(logs["loss"]))

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        super().on_evaluate(args, state, control, **kwargs)
        metrics = kwargs.get("metrics") or {}
        if "eval_loss" not in metrics:
            raise TrialRunError(f"the evaluation gave {sorted(metrics)}, no eval_loss: give the model labels")
        if not self._losses:
            raise TrialRunError("no training loss was logged before this evaluation: "
                                "TrainingArguments(logging_strategy='epoch') logs one per epoch")
        accuracy = metrics.get("eval_accuracy")
        others = {f"val_{k.removeprefix('eval_')}": float(v) for k, v in metrics.items()  # compute_metrics' eval_f1 → val_f1
                  if k.startswith("eval_") and k not in ("eval_loss", "eval_accuracy") and isinstance(v, (int, float))
                  and vocabulary.is_metric_name(k) and f"val_{k.removeprefix('eval_')}" not in vocabulary.CURVES
                  and not k.endswith(("_runtime", "_per_second"))}
        try:
            self.run.report(train_loss=sum(self._losses) / len(self._losses), val_loss=float(metrics["eval_loss"]),
                            val_accuracy=None if accuracy is None else float(accuracy), **others)
        except optuna.TrialPruned:
            control.should_training_stop = True
        self._losses = []
