"""Settings → keyword arguments of ``transformers.TrainingArguments``, for the methods that
transformers implements itself (fixed → constant, cosine → cosine_with_min_lr, wsd →
warmup_stable_decay, GreedyLR per epoch → greedy). The others have no transformers counterpart: ``hf_unsupported`` says why, and
``lrpo_study.integrations.hf.ScheduleCallback`` runs them in a Trainer anyway.

No transformers import here: the arguments are plain JSON.
"""

from __future__ import annotations

from typing import Any

from lrpo_study.schedules.wsd import decay_steps_of

# transformers' GreedyLR resets on the first decrease at min_lr when reset_start is 0; ours
# never resets then. Decreases at min_lr are counted one per step, so 2**31 - 1 is never in practice.
_NEVER = 2**31 - 1

_WHY_NOT = {
    "onecycle": "transformers has no one-cycle schedule",
    "lrpo": "transformers has no LRPO schedule",
    "curvature": "transformers has no curvature-adaptive schedule",
    "pbt": "transformers has no piecewise-constant schedule (a PBT lineage)",
}


def hf_unsupported(settings: dict[str, Any]) -> str | None:
    """Why ``settings`` cannot be written as TrainingArguments, or None when it can."""
    method, hp = settings["method"], settings["hyperparameters"]
    if method in _WHY_NOT:
        return f"{_WHY_NOT[method]}; run it in a Trainer with lrpo_study.integrations.hf.ScheduleCallback"
    if method == "cosine" and hp["warmup_steps"]:
        return ("transformers warms up as step/warmup, this trial (nanoGPT's rule) as (step+1)/(warmup+1); "
                "use lrpo_study.load_schedule to keep its lr curve")
    if method == "greedylr" and hp["interval"] == "step":
        return ("transformers' Trainer steps GreedyLR after evaluations on an evaluation metric, but this "
                "trial stepped it after every batch on the training loss; use lrpo_study.integrations.hf.ScheduleCallback")
    return None


def _optimizer_arguments(hp: dict[str, Any]) -> dict[str, Any]:
    if hp["optimizer"] == "adamw":
        return {"optim": "adamw_torch", "adam_beta1": hp["beta1"], "adam_beta2": hp["beta2"], "adam_epsilon": hp["adam_eps"]}
    return {"optim": "sgd", "optim_args": f"momentum={hp['momentum']},nesterov={hp['nesterov']}"}


def training_arguments(settings: dict[str, Any], *, steps_per_epoch: int | None = None) -> dict[str, Any]:
    """``TrainingArguments(**training_arguments(settings), output_dir=...)`` trains like the trial
    (the Trainer applies weight decay to weights only, not to biases and norms). A wsd decay given
    as a fraction of the run needs the trial's ``steps_per_epoch`` (transformers takes it in steps)."""
    reason = hf_unsupported(settings)
    if reason is not None:
        raise ValueError(f"{settings['method']}: {reason}")
    method, hp = settings["method"], settings["hyperparameters"]
    arguments: dict[str, Any] = {
        "learning_rate": hp["lr"], "num_train_epochs": hp["epochs"], "per_device_train_batch_size": hp["batch_size"],
        "weight_decay": hp["weight_decay"], "warmup_steps": 0, **_optimizer_arguments(hp),
    }
    if method == "fixed":
        arguments["lr_scheduler_type"] = "constant"
    elif method == "cosine":
        arguments.update(lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr": hp["eta_min"]})
    elif method == "wsd":
        if not hp["decay_steps"] and steps_per_epoch is None:
            raise ValueError("wsd's decay is a fraction of the run and the trial does not record its steps per epoch; "
                             "use lrpo_study.load_schedule")
        decay = hp["decay_steps"] if steps_per_epoch is None else decay_steps_of(
            hp["epochs"] * steps_per_epoch, decay_fraction=hp["decay_fraction"], decay_steps=hp["decay_steps"])
        arguments.update(warmup_steps=hp["warmup_steps"], lr_scheduler_type="warmup_stable_decay", lr_scheduler_kwargs={
            "num_decay_steps": decay, "decay_type": hp["decay_shape"], "min_lr_ratio": hp["min_lr_ratio"]})
    else:  # greedylr per epoch, on the validation loss
        arguments.update(
            lr_scheduler_type="greedy", eval_strategy="epoch", metric_for_best_model="loss",
            lr_scheduler_kwargs={
                "factor": hp["factor"], "patience": hp["patience"], "threshold": hp["threshold"],
                "threshold_mode": hp["threshold_mode"], "cooldown": hp["cooldown"], "warmup": hp["warmup"],
                "min_lr": hp["min_lr"], "max_lr": hp["max_lr"], "eps": hp["eps"], "smooth": hp["smooth"],
                "window_size": hp["window"], "reset_start": hp["reset_start"] or _NEVER,
            },
        )
    return arguments
