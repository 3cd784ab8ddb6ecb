"""Load exported settings and build their schedule in another project: torch and schedules only.

A settings file is JSON (never pickle) written by ``python -m lrpo_study export``::

    {"schema_version": 3, "method": "greedylr", "hyperparameters": {...every value...},
     "objectives": {"best_val_accuracy": 0.87, ...}, "provenance": {...}}

or, with ``--pareto``, ``{"schema_version": 3, "trials": [<one such object without
schema_version>, ...]}``. Version 1 files (lrpo_study 0.1: SGD only, provenance
naming model and split instead of the task) are read too.
"""

from __future__ import annotations

import copy
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from lrpo_study.schedules import NEEDS_TOTAL_STEPS, Schedule, make_schedule
from lrpo_study.training.hyperparameters import METHODS, TRAIN_PARAMS, expected_keys, resolve
from lrpo_study.training.optimizers import build_optimizer

SCHEMA_VERSION = 3
SETTINGS_KEYS = {"method", "hyperparameters", "objectives", "provenance"}
PROVENANCE_KEYS = {
    "study", "trial", "storage", "lrpo_study_version", "torch_version", "task", "task_options", "seed", "reference",
}


def _upgrade_v1(settings: Any) -> Any:
    """A version 1 setting as version 2: SGD without Nesterov, fashion-mnist with its model and split."""
    if not isinstance(settings, dict):
        return settings
    hp, provenance = settings.get("hyperparameters"), settings.get("provenance")
    if isinstance(hp, dict):
        hp = {"optimizer": "sgd", "nesterov": False, **hp}
    if isinstance(provenance, dict) and "task" not in provenance:
        options = {k: provenance[k] for k in ("model", "split") if k in provenance}
        provenance = {k: v for k, v in provenance.items() if k not in ("model", "split")}
        provenance.update(task="fashion-mnist", task_options=options)
    return {**settings, "hyperparameters": hp, "provenance": provenance}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects without repeated keys: the last of two values would win silently."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice in one object")
        seen[key] = value
    return seen


def _upgrade_v2(settings: Any) -> Any:
    """A version 2 setting as version 3: hyperparameters added since (grad_clip; cosine's warmup_steps)
    at the values those runs used."""
    if not isinstance(settings, dict) or not isinstance(settings.get("hyperparameters"), dict):
        return settings
    added: dict[str, Any] = {"grad_clip": 0.0, **({"warmup_steps": 0} if settings.get("method") == "cosine" else {})}
    return {**settings, "hyperparameters": {**added, **settings["hyperparameters"]}}


_UPGRADES: dict[int, Callable[[Any], Any]] = {
    1: lambda s: _upgrade_v2(_upgrade_v1(s)), 2: _upgrade_v2, SCHEMA_VERSION: lambda s: s,
}


def validate_settings(settings: Any, *, where: str = "settings") -> dict[str, Any]:
    """Check one settings object; every problem is a ``ValueError`` naming the key."""
    if not isinstance(settings, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(settings).__name__}")
    missing, extra = SETTINGS_KEYS - set(settings), set(settings) - SETTINGS_KEYS
    if missing:
        raise ValueError(f"{where}: missing key {sorted(missing)[0]!r}")
    if extra:
        raise ValueError(f"{where}: unknown key {sorted(extra)[0]!r}")
    method = settings["method"]
    if method not in METHODS:
        raise ValueError(f"{where}.method: unknown method {method!r}; allowed: {', '.join(METHODS)}")
    hp = settings["hyperparameters"]
    if not isinstance(hp, dict):
        raise ValueError(f"{where}.hyperparameters must be an object")
    optimizer = hp.get("optimizer")
    if not isinstance(optimizer, str):
        raise ValueError(f"{where}.hyperparameters: missing key 'optimizer'")
    expected = expected_keys(method, optimizer)
    if expected - set(hp):
        raise ValueError(f"{where}.hyperparameters: missing key {sorted(expected - set(hp))[0]!r}")
    try:
        resolved = resolve(method, hp)
    except ValueError as exc:
        raise ValueError(f"{where}.hyperparameters: {exc}") from None
    objectives = settings["objectives"]
    if not isinstance(objectives, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in objectives.values()
    ):
        raise ValueError(f"{where}.objectives must map objective names to finite numbers")
    provenance = settings["provenance"]
    if not isinstance(provenance, dict):
        raise ValueError(f"{where}.provenance must be an object")
    if PROVENANCE_KEYS - set(provenance):
        raise ValueError(f"{where}.provenance: missing key {sorted(PROVENANCE_KEYS - set(provenance))[0]!r}")
    return {**settings, "hyperparameters": resolved}


def load_settings(path: str | os.PathLike[str], *, index: int | None = None) -> dict[str, Any]:
    """Read and validate an exported settings file; ``index`` picks one of a ``--pareto`` file's trials."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
    except OSError as exc:
        raise ValueError(f"cannot read settings file {str(path)!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"settings file {str(path)!r} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError(f"settings file {str(path)!r} is nested too deeply to be a settings file") from None
    except ValueError as exc:  # a duplicate key, or an integer too long to read
        raise ValueError(f"settings file {str(path)!r}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"settings file {str(path)!r} must hold a JSON object")
    version = data.get("schema_version")
    if type(version) is not int or version not in _UPGRADES:
        raise ValueError(f"schema_version must be one of {sorted(_UPGRADES)}, got schema_version={version!r}")
    upgrade = _UPGRADES[version]
    body = {k: v for k, v in data.items() if k != "schema_version"}
    if "trials" in body:
        trials = body["trials"]
        if set(body) != {"trials"} or not isinstance(trials, list) or not trials:
            raise ValueError("trials must be the only key beside schema_version, a non-empty list")
        if index is None and len(trials) > 1:
            raise ValueError(
                f"the file holds {len(trials)} Pareto settings; pick one with index=0..{len(trials) - 1} "
                f"(run: --index N)"
            )
        i = 0 if index is None else index
        if not 0 <= i < len(trials):
            raise ValueError(f"index must be in [0, {len(trials) - 1}], got {index=}")
        return validate_settings(upgrade(trials[i]), where=f"trials[{i}]")
    if index not in (None, 0):
        raise ValueError(f"the file holds one setting; index must be 0 or None, got {index=}")
    return validate_settings(upgrade(body))


def _one_setting(path_or_settings: str | os.PathLike[str] | Mapping[str, Any], index: int | None) -> dict[str, Any]:
    if isinstance(path_or_settings, Mapping):
        if index is not None:
            raise ValueError(f"index picks one trial of a --pareto settings file, not of settings already loaded, got {index=}")
        return validate_settings(dict(path_or_settings))
    return load_settings(path_or_settings, index=index)


def load_optimizer(
    path_or_settings: str | os.PathLike[str] | Mapping[str, Any], params: Iterable[torch.nn.Parameter], *,
    index: int | None = None, decay_matrices_only: bool = False,
) -> torch.optim.Optimizer:
    """The optimizer the settings were tuned with, over ``params``: its type (SGD or AdamW), lr, momentum and
    Nesterov or betas and ε, and weight decay (``decay_matrices_only``: none on biases and norms, nanoGPT's
    recipe). ``index`` picks one trial of a ``--pareto`` file."""
    hp = _one_setting(path_or_settings, index)["hyperparameters"]
    return build_optimizer(params, hp, matrices_only=decay_matrices_only)


def optimizer_differences(optimizer: torch.optim.Optimizer, hp: Mapping[str, Any]) -> list[str]:
    """How ``optimizer`` (its first param group) differs from the one ``hp`` was tuned with, besides the lr."""
    group = optimizer.param_groups[0]
    tuned = torch.optim.AdamW if hp["optimizer"] == "adamw" else torch.optim.SGD
    if not isinstance(optimizer, tuned):
        return [f"{type(optimizer).__name__}, tuned with {tuned.__name__}"]
    expected = ({"betas": (hp["beta1"], hp["beta2"]), "eps": hp["adam_eps"]} if hp["optimizer"] == "adamw"
                else {"momentum": hp["momentum"], "nesterov": hp["nesterov"]})
    expected["weight_decay"] = hp["weight_decay"]
    found = []
    for key, value in expected.items():
        have = group.get(key)
        if have is not None and (tuple(have) if isinstance(value, tuple) else have) != value:
            found.append(f"{key}={have!r}, tuned with {value!r}")
    return found


def load_schedule(
    path_or_settings: str | os.PathLike[str] | Mapping[str, Any], optimizer: torch.optim.Optimizer, *,
    index: int | None = None, steps_per_epoch: int | None = None, params: Iterable[torch.Tensor] | None = None,
    probe: Callable[[float], float] | None = None, seed: int = 0, **overrides: Any,
) -> Schedule:
    """The exported schedule, ready for ``optimizer`` (any model, any data, any framework); ``index`` picks
    one trial of a ``--pareto`` file. Build ``optimizer`` with ``load_optimizer``: only the lr is set here,
    and an optimizer other than the tuned one (type, momentum, betas, weight decay) is warned about.

    Sets each param group's lr to the tuned ``lr`` (groups keep their ratios to
    the first group). What a method needs beyond the optimizer:

    - cosine, onecycle, wsd, pbt: ``steps_per_epoch`` (optimizer steps per epoch), to span ``epochs``;
    - curvature: ``params=model.parameters()``, and ``schedule.observe(loss)`` called between
      forward and backward (stepping without it raises);
    - lrpo with ``variant="predicted"``: ``probe=fn(alpha) -> loss after a short probe``.

    Any other keyword overrides a hyperparameter (``epochs=30``), validated.
    Everything is checked before the optimizer is touched: on any error it is left as it was.

    The result is a ``torch.optim.lr_scheduler`` object. ``schedule.interval`` ("step" or
    "epoch") says when to step it, ``schedule.monitor`` which value ``step(metrics)`` takes
    (None, "train_loss" or "val_loss"), ``schedule.epochs`` how long to train. A plain loop
    calls ``observe(loss)``, ``batch_end()`` and ``epoch_end(val_loss=...)`` and needs no
    special cases; ``lrpo_study.integrations`` has PyTorch Lightning's and the Hugging Face
    Trainer's glue.
    """
    settings = _one_setting(path_or_settings, index)
    method = settings["method"]
    hp = resolve(method, {**settings["hyperparameters"], **overrides}) if overrides else settings["hyperparameters"]
    if steps_per_epoch is not None and (type(steps_per_epoch) is not int or steps_per_epoch < 1):
        raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch=}")
    total_steps = hp["epochs"] * steps_per_epoch if steps_per_epoch else None
    if method in NEEDS_TOTAL_STEPS and total_steps is None:
        raise ValueError(f"{method} needs steps_per_epoch= (batches per epoch) to span its {hp['epochs']} epochs")
    if method == "curvature" and params is None:
        raise ValueError("curvature needs params=model.parameters() to estimate the Hessian trace")
    if method == "lrpo" and hp["variant"] == "predicted" and probe is None:
        raise ValueError("lrpo variant 'predicted' needs probe=fn(alpha) -> loss after a short probe")
    differences = optimizer_differences(optimizer, hp)
    if differences:
        warnings.warn(f"load_schedule: the optimizer is not the one these settings were tuned with ({'; '.join(differences)}); "
                      "build it with lrpo_study.load_optimizer(settings, model.parameters())", UserWarning, stacklevel=2)
    before = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    first = optimizer.param_groups[0]["lr"]
    try:
        for group in optimizer.param_groups:
            group["lr"] = hp["lr"] * (group["lr"] / first if first else 1.0)
            group.pop("initial_lr", None)
        return make_schedule(
            method, optimizer, hp, total_steps=total_steps, params=params, probe=probe, seed=seed, ignore=TRAIN_PARAMS,
        )
    except BaseException:
        for group, old in zip(optimizer.param_groups, before, strict=True):
            for key in set(group) - set(old) - {"params"}:  # e.g. initial_lr, one-cycle's max_lr
                del group[key]
            group.update(old)
        raise
