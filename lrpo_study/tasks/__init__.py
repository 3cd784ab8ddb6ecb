"""Workloads for the one loop: the ``Task`` type, built-in tasks and ``module:factory`` references.

A study file's ``[task]`` table (or ``run --task NAME --task-option k=v``)
names a built-in task (``fashion-mnist``) or ``package.module:factory``.
Every other key is a keyword argument of the factory, which returns a
``Task``. Naming a module imports it, and so runs its code, exactly as
``import package.module`` would: only name your own code. Nothing else in a
study file reaches import, eval, exec or unpickling:
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from lrpo_study.errors import UserError
from lrpo_study.schedules import Param, validate_params

from . import fashion_mnist, shakespeare, shakespeare_gpt2
from ._batches import Batch, batch_len, collate, loader, to_device
from ._identity import model_identity
from ._task import Task, cross_entropy, data_fingerprint


@dataclass(frozen=True)
class BuiltinTask:
    """A built-in factory: its options are validated like hyperparameters; it gets the data root and seed."""

    factory: Callable[..., Task]
    options: dict[str, Param]
    defaults: Mapping[str, Any]  # the Task's defaults, known before its data is loaded


BUILTIN_TASKS: dict[str, BuiltinTask] = {
    "fashion-mnist": BuiltinTask(fashion_mnist.make_task, fashion_mnist.OPTIONS, {}),
    "shakespeare-char": BuiltinTask(shakespeare.make_task, shakespeare.OPTIONS, shakespeare.DEFAULTS),
    shakespeare_gpt2.NAME: BuiltinTask(shakespeare_gpt2.make_task, shakespeare_gpt2.OPTIONS, shakespeare.DEFAULTS),
}
DEFAULT_TASK = "fashion-mnist"

__all__ = [
    "BUILTIN_TASKS", "DEFAULT_TASK", "Batch", "Task", "batch_len", "collate", "cross_entropy", "data_fingerprint", "load_task",
    "load_loop", "loader", "model_identity", "task_options", "to_device",
]


def task_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """A built-in task's options with defaults filled (validated); a reference's as given."""
    if name in BUILTIN_TASKS:
        try:
            return validate_params(BUILTIN_TASKS[name].options, dict(options), what=f"task {name!r}")
        except ValueError as exc:
            raise UserError(f"task {name!r}: {exc}") from None
    _split_reference(name)
    return dict(options)


def _split_reference(name: str) -> tuple[str, str]:
    module, sep, attr = name.partition(":")
    if not sep or not module or not attr:
        raise UserError(
            f"unknown task {name!r}; use a built-in task ({', '.join(BUILTIN_TASKS)}) or 'package.module:factory'"
        )
    return module, attr


def load_loop(name: str) -> Callable[..., Any]:
    """A study's training loop, ``package.module:function``, which takes one argument (the trial's
    ``TrialRun``); every failure is a one-line ``UserError``."""
    loop = _import_factory(name, what="loop")
    try:
        signature = inspect.signature(loop)
    except ValueError:  # a builtin without a signature: its call will say
        return loop
    try:
        signature.bind(None)
    except TypeError:
        raise UserError(f"loop {name!r} must take one argument, the trial's TrialRun (def fit(run): ...), "
                        f"got {getattr(loop, '__name__', 'it')}{signature}") from None
    return loop


def _import_factory(name: str, *, what: str = "task") -> Callable[..., Any]:
    module_name, attr = _split_reference(name)
    # Like uvicorn and gunicorn: the user's own modules resolve from the working directory.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001  (ImportError, SyntaxError, anything the module raises)
        raise UserError(f"{what} {name!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UserError(f"{what} {name!r}: {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UserError(f"{what} {name!r}: {attr!r} is not callable (a {type(target).__name__})")
    return target  # type: ignore[no-any-return]


def load_task(
    name: str = DEFAULT_TASK, options: Mapping[str, Any] | None = None, *,
    data_dir: str | os.PathLike[str] | None = None, seed: int = 42,
) -> Task:
    """Build the task ``name`` with ``options``; every failure is a one-line ``UserError``.

    Built-in tasks also receive ``data_dir`` and ``seed`` (which carves their
    split); a ``module:factory`` receives exactly ``options``.
    """
    resolved = task_options(name, options or {})
    if name in BUILTIN_TASKS:
        return replace(BUILTIN_TASKS[name].factory(data_dir=data_dir, seed=seed, **resolved), options=resolved)
    factory = _import_factory(name)
    try:
        task = factory(**resolved)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001  (the user's code: report it, never a traceback)
        raise UserError(f"task {name!r}: the factory raised {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if not isinstance(task, Task):
        raise UserError(f"task {name!r}: the factory returned a {type(task).__name__}, not an lrpo_study.Task")
    _check_model(name, task)
    _check_targets(name, task)
    _check_own_loss(name, task)
    return replace(task, options=resolved)


def _check_model(name: str, task: Task) -> None:
    """``build_model()`` gives a ``torch.nn.Module`` (built once, under a forked RNG, before any study)."""
    with torch.random.fork_rng(devices=[]):
        try:
            model = task.build_model()
        except Exception as exc:  # noqa: BLE001  (the user's code: one line, never a traceback)
            raise UserError(f"task {name!r}: build_model() raised {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"task {name!r}: build_model() returned a {type(model).__name__}, not a torch.nn.Module")


def _check_targets(name: str, task: Task) -> None:
    """The default loss is cross-entropy over class indices: float targets would be truncated to classes."""
    if task.loss is not None or task.compute_loss is not None:
        return
    with torch.random.fork_rng(devices=[]):
        batch = task.train if isinstance(task.train, tuple) else collate(task.train, range(min(2, task.train_size)))
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[1], torch.Tensor) \
            and batch[1].is_floating_point():
        raise UserError(
            f"task {name!r}: the targets are {batch[1].dtype} but the default loss is cross-entropy over class "
            "indices; give integer class targets, or the Task a loss= (e.g. torch.nn.functional.mse_loss, "
            "with has_accuracy=False)"
        )


def _check_own_loss(name: str, task: Task) -> None:
    """Dict batches train on the model's own loss: check, on two items, that there is one (before any study)."""
    if isinstance(task.train, tuple) or task.compute_loss is not None:
        return
    with torch.random.fork_rng(devices=[]):
        batch = collate(task.train, range(min(2, task.train_size)))
        if not isinstance(batch, dict):
            return
        try:
            task.batch_loss(task.build_model(), batch)
        except TypeError as exc:
            raise UserError(f"task {name!r}: {exc}") from None
