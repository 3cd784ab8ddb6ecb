"""``run``: train once with one schedule (or exported settings) and print the curves."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lrpo_study import metrics
from lrpo_study.errors import UserError
from lrpo_study.names import METHODS

from ._common import add_data_args, parse_set, seed


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="train once with one schedule and print the curves")
    run.add_argument("--method", choices=METHODS, help="the schedule (or take it from --settings)")
    run.add_argument("--settings", metavar="SETTINGS.json", help="re-run exported settings (method + every hyperparameter)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any hyperparameter (repeatable)")
    run.add_argument("--task", help="a built-in task or package.module:factory (default: the task --settings "
                                    "were tuned on, else fashion-mnist)")
    run.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE", help="a task option (repeatable)")
    run.add_argument("--epochs", type=int, help="epochs (default 16; for lrpo split like the paper's 10+1+5)")
    run.add_argument("--seed", type=seed, help="default: the seed --settings were tuned with, else 42")
    run.add_argument("--index", type=int, help="which trial of a --pareto settings file (0-based)")
    for flag, kind, default, choices in (
        ("--model", str, "mlp", ("mlp", "cnn")), ("--split", str, "holdout", ("paper", "holdout")),
        ("--train-size", int, 20000, None), ("--val-size", int, 4000, None),
    ):
        run.add_argument(flag, type=kind, choices=choices,
                         help=f"fashion-mnist option (default {default}); same as --task-option {flag[2:].replace('-', '_')}=...")
    run.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    run.add_argument("--test", action="store_true", help="also score the final model on the task's test data (never done in studies)")
    add_data_args(run)
    run.set_defaults(handler=handle)


def _method_and_values(args: argparse.Namespace) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The method, its hyperparameters and the settings' provenance (empty without --settings)."""
    overrides = parse_set(args.set)
    if args.settings is None:
        if args.method is None:
            raise UserError("run needs --method or --settings")
        return args.method, overrides, {}
    if args.method is not None:
        raise UserError("give --method or --settings, not both (the settings file names its method)")
    from lrpo_study.integrations.settings import load_settings

    try:
        settings = load_settings(args.settings, index=args.index)
    except ValueError as exc:
        raise UserError(f"{args.settings}: {exc}") from None
    values = dict(settings["hyperparameters"])
    if args.epochs is not None or "epochs" in overrides:
        values.pop("epochs")
        if settings["method"] == "lrpo":  # a new epoch count re-splits the phases unless they are set
            for phase in ("pretrain_epochs", "finetune_epochs"):
                if phase not in overrides:
                    values.pop(phase)
    return settings["method"], {**values, **overrides}, settings["provenance"]


def _given_options(args: argparse.Namespace, task: str) -> dict[str, Any]:
    options = parse_set(args.task_option, flag="--task-option")
    for flag in ("model", "split", "train_size", "val_size"):
        value = getattr(args, flag)
        if value is None:
            continue
        if task != "fashion-mnist":
            raise UserError(f"--{flag.replace('_', '-')} is a fashion-mnist option; for task {task!r} use --task-option KEY=VALUE")
        if flag in options:
            raise UserError(f"give {flag} once: --{flag.replace('_', '-')} or --task-option {flag}=...")
        options[flag] = value
    return options


def _workload(args: argparse.Namespace, provenance: dict[str, Any]) -> tuple[str, dict[str, Any], int, str | None]:
    """The task, its options and the seed to train; settings replay the ones they were tuned on, and a flag
    that changes them is followed and named in the returned line (None: nothing changed)."""
    if not provenance:
        task = args.task or "fashion-mnist"
        return task, _given_options(args, task), 42 if args.seed is None else args.seed, None
    recorded_task, recorded_options = provenance["task"], dict(provenance["task_options"] or {})
    recorded_seed = provenance["seed"] if isinstance(provenance["seed"], int) else 42
    task = args.task or recorded_task
    given = _given_options(args, task)
    options = {**recorded_options, **given} if task == recorded_task else given
    seed_ = recorded_seed if args.seed is None else args.seed
    changed = [f"task {task!r} (tuned on {recorded_task!r})"] if task != recorded_task else []
    changed += [f"{key}={options.get(key)!r} (tuned with {recorded_options.get(key)!r})"
                for key in sorted(set(options) | set(recorded_options), key=str)
                if task == recorded_task and options.get(key) != recorded_options.get(key)]
    changed += [f"seed {seed_} (tuned with {recorded_seed})"] if seed_ != recorded_seed else []
    note = f"run: not the workload these settings were tuned on: {'; '.join(changed)}" if changed else None
    return task, options, seed_, note


def handle(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from lrpo_study.tasks import load_task
    from lrpo_study.training.hyperparameters import resolve, with_defaults
    from lrpo_study.training.loop import Diverged, EpochMetrics, resolve_device, train

    method, values, provenance = _method_and_values(args)
    task_name, options, seed_, note = _workload(args, provenance)
    if note is not None:
        print(note, file=sys.stderr)
    if args.epochs is not None:
        if "epochs" in values:
            raise UserError("give epochs once: --epochs or --set epochs=N")
        values["epochs"] = args.epochs
    device = resolve_device(args.device)
    task = load_task(task_name, options, data_dir=args.data_dir, seed=seed_).to(device)
    try:  # the task's recipe, under what was given
        hp = resolve(method, with_defaults(method, values, task.defaults))
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if args.test and task.test is None:
        raise UserError(f"--test: task {task_name!r} with these options has no test data (the paper split has none)")

    def table_row(m: EpochMetrics) -> None:
        if m.epoch == 1:
            tqdm.write(f"{'epoch':>5} {'train_loss':>10} {'val_loss':>9} {'val_acc':>8} {'lr':>9} {'seconds':>8}")
        accuracy = "-" if m.val_accuracy is None else f"{m.val_accuracy:.4f}"
        tqdm.write(f"{m.epoch:>5} {m.train_loss:>10.4f} {m.val_loss:>9.4f} {accuracy:>8} {m.lr:>9.5f} {m.seconds:>8.3f}")

    try:
        result = train(
            task=task, method=method, hyperparameters=hp, seed=seed_, device=device,
            on_epoch=() if args.json else (table_row,), progress=sys.stderr.isatty(),  # no bar in logs
            score_test=args.test,
        )
    except Diverged as exc:
        raise UserError(f"{method} {exc} (lr={hp['lr']:g}: try a lower lr)") from None
    if args.json:
        print(json.dumps(result.summary()))
        return 0
    found = metrics.available(result.curves)
    shown = [o for o in found if not o.is_cost and o.reduction == ("best" if o.curve == metrics.VAL_ACCURACY else "final")]
    quality = " | ".join(f"{o.label} {o.value(result.curves):.4f}" for o in shown)
    costs = " | ".join(f"{o.label} {o.value(result.curves):.4g}" for o in found if o.is_cost)
    print(
        f"{quality} | {costs}"
        + (f" | alpha {result.extras['alpha']:.4f}" if "alpha" in result.extras else "")
        + "".join(f" | {name.replace('_', ' ')} {value:.4f}" for name, value in result.extras.items() if name.startswith("test_"))
    )
    return 0
