"""StudySpec: a study file (TOML, read with tomllib) parsed and validated before anything runs.

Every error is a ``UserError`` whose one line names the file and the key.
See ``studies/README.md`` for the format.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrpo_study import metrics
from lrpo_study.errors import UserError
from lrpo_study.names import SAMPLERS
from lrpo_study.tasks import BUILTIN_TASKS, DEFAULT_TASK, task_options
from lrpo_study.training.hyperparameters import (
    METHODS,
    cost_params,
    method_params,
    resolve,
    with_defaults,
)

_LOOP_OBJECTIVES = (metrics.BEST_VAL_ACCURACY.name, metrics.EPOCHS.name)
MAX_TRIALS = 1_000_000  # a study's trials; past this a typo (1e21), not a plan
SINGLE_PRUNERS = ("median", "successive_halving", "hyperband", "none")
MULTI_PRUNERS = ("quantile", "none")
_STUDY_KEYS = {
    "name": str, "method": str, "objectives": list, "sampler": str, "n_trials": int, "seed": int,
    "train_seed": int, "description": str,
}
# Before [task] existed these were [study] keys; they still work there for fashion-mnist.
_FASHION_MNIST_STUDY_KEYS = ("model", "split", "train_size", "val_size")
_PRUNING_KEYS = {"rule": str, "warmup_epochs": int, "min_trials": int, "quantile": float, "cost_tolerance": float}
_SEARCH_KEYS = {"type": str, "low": (int, float), "high": (int, float), "log": bool, "step": (int, float), "choices": list, "when": dict}


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str  # int | float | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: dict[str, Any] = field(default_factory=dict)

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        assert self.low is not None and self.high is not None
        return self.low <= value <= self.high and (self.type == "float" or float(value).is_integer())

    def active(self, values: dict[str, Any]) -> bool:
        return all(values.get(k) == v for k, v in self.when.items())


@dataclass(frozen=True)
class PruningSpec:
    rule: str = "none"
    warmup_epochs: int = 2
    min_trials: int = 5
    quantile: float = 0.5
    cost_tolerance: float = 0.1


@dataclass(frozen=True)
class PBTSpec:
    """Population-based training: ``population`` members, a generation every ``interval`` epochs; at each
    generation's end the bottom ``quantile`` copies a top-``quantile`` member's state and explores its lr
    (resampled with ``resample_probability``, else multiplied by one of ``factors``; Ray's PBT)."""

    population: int
    interval: int
    quantile: float = 0.25
    factors: tuple[float, ...] = (0.8, 1.2)
    resample_probability: float = 0.25


_PBT_KEYS = {"population": int, "interval": int, "quantile": (int, float), "factors": list, "resample_probability": (int, float)}


@dataclass(frozen=True)
class StudySpec:
    path: str
    name: str
    method: str
    task: str = DEFAULT_TASK
    task_options: dict[str, Any] = field(default_factory=dict)
    loop: str | None = None  # "package.module:function": the user's training loop trains the trials instead of a task
    objectives: tuple[str, ...] = (metrics.BEST_VAL_ACCURACY.name, metrics.TRAIN_FLOPS.name)  # as the file spells them
    sampler: str = "tpe"
    n_trials: int = 20
    seed: int = 0
    train_seed: int = 42
    description: str = ""
    pruning: PruningSpec = PruningSpec()
    fixed: dict[str, Any] = field(default_factory=dict)
    search: tuple[SearchParam, ...] = ()
    pbt: PBTSpec | None = None  # method "pbt" only

    @property
    def parsed_objectives(self) -> tuple[metrics.Objective, ...]:
        return tuple(metrics.parse_objective(o) for o in self.objectives)

    @property
    def directions(self) -> list[metrics.Direction]:
        return [o.direction for o in self.parsed_objectives]

    def quality(self, *, has_accuracy: bool) -> metrics.Objective:
        """The objective that scores the model (``metrics.quality_objective``)."""
        return metrics.quality_objective(self.objectives, has_accuracy=has_accuracy)

    @property
    def generations(self) -> int:
        """A PBT study's generations per member (its epochs over the interval); 1 for any other study."""
        return 1 if self.pbt is None else self.n_trials // self.pbt.population

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy, stored in the study's user_attrs."""
        return {
            "name": self.name, "method": self.method,
            "task": {"name": self.task, **({"loop": self.loop} if self.loop else {}), **self.task_options},
            "objectives": list(self.objectives), "sampler": self.sampler, "n_trials": self.n_trials,
            "seed": self.seed, "train_seed": self.train_seed, "fixed": self.fixed, "pruning": self.pruning.__dict__,
            "search": {p.name: {k: v for k, v in p.__dict__.items() if k != "name"} for p in self.search},
            **({"pbt": {**self.pbt.__dict__, "factors": list(self.pbt.factors)}} if self.pbt else {}),
        }


def load_spec(path: str | Path) -> StudySpec:
    path = Path(path)
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{where}: cannot read study file: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: TOML syntax error: {exc}") from exc
    return parse_spec(raw, where=where)


def parse_spec(raw: dict[str, Any], *, where: str) -> StudySpec:
    def fail(key: str, message: str) -> UserError:
        return UserError(f"{where}: {key}: {message}")

    _only(raw, {"study", "task", "pruning", "fixed", "search", "pbt"}, "", fail)
    study = raw.get("study")
    if not isinstance(study, dict):
        raise fail("study", "missing [study] table")
    study = dict(study)
    task, options, loop = _parse_task(raw.get("task", {}), study, fail)
    _check_types(study, _STUDY_KEYS, "study", fail)
    for key in ("name", "method"):
        if key not in study:
            raise fail(f"study.{key}", "required")
    _choice(study, "method", METHODS, fail)
    _choice(study, "sampler", SAMPLERS, fail)
    if "n_trials" in study and not 1 <= study["n_trials"] <= MAX_TRIALS:
        raise fail("study.n_trials", f"must be in [1, {MAX_TRIALS:_}], got {study['n_trials']}")
    if not study["name"].strip():
        raise fail("study.name", "must not be empty")
    for key in ("seed", "train_seed"):
        if key in study and not 0 <= study[key] < 2**32:
            raise fail(f"study.{key}", f"must be in [0, 2**32), got {study[key]}")
    # A loop counts FLOPs only when it says what its steps cost (count_step): its default cost is its epochs.
    objectives = tuple(study.get("objectives", StudySpec.objectives if loop is None else _LOOP_OBJECTIVES))
    if not objectives or len(set(objectives)) != len(objectives):
        raise fail("study.objectives", "must be a non-empty list without repeats")
    parsed = []
    for name in objectives:
        try:
            parsed.append(metrics.parse_objective(name))
        except ValueError as exc:
            raise fail("study.objectives", str(exc)) from None
    if len({o.name for o in parsed}) != len(parsed):
        raise fail("study.objectives", f"names one objective twice: {list(objectives)}")
    method = study["method"]
    params = method_params(method)

    pruning_raw = raw.get("pruning", {})
    if not isinstance(pruning_raw, dict):
        raise fail("pruning", "must be a table")
    _check_types(pruning_raw, _PRUNING_KEYS, "pruning", fail)
    pruning = PruningSpec(**pruning_raw)
    allowed_rules = MULTI_PRUNERS if len(objectives) > 1 else SINGLE_PRUNERS
    if pruning.rule not in allowed_rules:
        kind = "multi" if len(objectives) > 1 else "single"
        raise fail("pruning.rule", f"unknown rule {pruning.rule!r} for a {kind}-objective study; allowed: {', '.join(allowed_rules)}")
    if not 0.0 < pruning.quantile < 1.0:
        raise fail("pruning.quantile", f"must be in (0, 1), got {pruning.quantile}")
    if pruning.warmup_epochs < 0 or pruning.min_trials < 1 or pruning.cost_tolerance < 0:
        raise fail("pruning", "warmup_epochs >= 0, min_trials >= 1 and cost_tolerance >= 0 are required")
    if len(objectives) == 1 and pruning.rule != "none" and parsed[0].is_cost:
        raise fail("pruning.rule", f"pruning needs a quality objective (accuracy, loss, a metric), not the cost {objectives[0]!r}")

    fixed_raw = raw.get("fixed", {})
    if not isinstance(fixed_raw, dict):
        raise fail("fixed", "must be a table")
    fixed: dict[str, Any] = {}
    for key, value in fixed_raw.items():
        if key not in params:
            raise fail(f"fixed.{key}", f"unknown hyperparameter for {method}; allowed: {', '.join(params)}")
        try:
            fixed[key] = params[key].validate(key, value)
        except ValueError as exc:
            raise fail(f"fixed.{key}", str(exc)) from exc

    search_raw = raw.get("search", {})
    if not isinstance(search_raw, dict):
        raise fail("search", "must be a table")
    search: list[SearchParam] = []
    for name, entry in search_raw.items():
        key = f"search.{name}"
        if name not in params:
            raise fail(key, f"unknown hyperparameter for {method}; allowed: {', '.join(params)}")
        if name in fixed:
            raise fail(key, "is also in [fixed]; a value is either fixed or searched")
        if not isinstance(entry, dict):
            raise fail(key, "must be a table like { type = \"float\", low = 0.1, high = 1.0 }")
        search.append(_parse_search(name, entry, params[name], key, {**{p.name: p for p in search}, **fixed}, fail))

    pbt = _parse_pbt(raw, study, fixed, search, pruning, loop, fail)
    if pbt is not None:
        study["n_trials"] = pbt.population * (int(fixed.get("epochs", params["epochs"].default)) // pbt.interval)  # generations
    spec = StudySpec(
        path=where, task=task, task_options=options, loop=loop, pruning=pruning, fixed=fixed, search=tuple(search), objectives=objectives,
        pbt=pbt, **{k: v for k, v in study.items() if k != "objectives"},
    )
    builtin = BUILTIN_TASKS.get(task)
    check_corners(spec, defaults=builtin.defaults if builtin else {})  # a user task's, once it is built
    return spec


def _parse_pbt(
    raw: dict[str, Any], study: dict[str, Any], fixed: dict[str, Any], search: list[SearchParam], pruning: PruningSpec,
    loop: str | None, fail: Any,
) -> PBTSpec | None:
    """``[pbt]`` for method "pbt": the population, its generations and how members exploit and explore."""
    table = raw.get("pbt")
    if study["method"] != "pbt":
        if table is not None:
            raise fail("pbt", f"only for method = \"pbt\", got method = {study['method']!r}")
        return None
    if not isinstance(table, dict):
        raise fail("pbt", "method \"pbt\" needs a [pbt] table with population and interval (epochs per generation)")
    _check_types(table, _PBT_KEYS, "pbt", fail)
    for key in ("population", "interval"):
        if key not in table:
            raise fail(f"pbt.{key}", "required")
    if table["population"] < 2:
        raise fail("pbt.population", f"must be >= 2 (members exploit each other), got {table['population']}")
    epochs = int(fixed.get("epochs", method_params("pbt")["epochs"].default))
    if table["interval"] < 1 or epochs % table["interval"]:
        raise fail("pbt.interval", f"must divide the epochs ({epochs}) into generations, got {table['interval']}")
    quantile = float(table.get("quantile", PBTSpec.quantile))
    if not 0.0 < quantile <= 0.5:
        raise fail("pbt.quantile", f"must be in (0, 0.5], got {quantile}")
    factors = table.get("factors", list(PBTSpec.factors))
    if not factors or any(isinstance(f, bool) or not isinstance(f, (int, float)) or not f > 0 or not math.isfinite(f) for f in factors):
        raise fail("pbt.factors", f"must be a non-empty list of numbers > 0, got {factors}")
    resample = float(table.get("resample_probability", PBTSpec.resample_probability))
    if not 0.0 <= resample <= 1.0:
        raise fail("pbt.resample_probability", f"must be in [0, 1], got {resample}")
    if loop is not None:
        raise fail("task.loop", "a pbt study trains its task with the built-in loop (members start from each other's states)")
    if pruning.rule != "none":
        raise fail("pruning.rule", f"pbt studies do not prune (exploit is their selection), got {pruning.rule!r}")
    for key in ("lrs", "piece_epochs"):
        if key in fixed:
            raise fail(f"fixed.{key}", "set by PBT for each member's lineage; remove it")
    searched = {p.name: p for p in search}
    if "lr" not in searched or searched["lr"].type != "float":
        raise fail("search.lr", "a pbt study needs lr searched as a float: the members' first lrs and the bounds of explore")
    others = sorted(set(searched) - {"lr"})
    if others:
        raise fail(f"search.{others[0]}", "a pbt study searches lr only (its lr path is what it discovers); fix the others in [fixed]")
    generations = epochs // table["interval"]
    if "n_trials" in study and study["n_trials"] != table["population"] * generations:
        raise fail("study.n_trials", f"a pbt study runs population × generations = {table['population'] * generations} trials; "
                   f"remove n_trials or set it to that, got {study['n_trials']}")
    return PBTSpec(population=table["population"], interval=table["interval"], quantile=quantile,
                   factors=tuple(float(f) for f in factors), resample_probability=resample)


def _parse_task(table: Any, study: dict[str, Any], fail: Any) -> tuple[str, dict[str, Any], str | None]:
    """``[task]``: ``name`` plus the factory's keyword arguments (fashion-mnist's may sit in [study]), or
    ``loop``, the user's training function, plus the keyword arguments it gets as ``run.options``."""
    if not isinstance(table, dict):
        raise fail("task", "must be a table like { name = \"fashion-mnist\" }")
    options = dict(table)
    if "loop" in options:
        loop = options.pop("loop")
        if "name" in options:
            raise fail("task", "give a task's name or a loop, not both")
        if not isinstance(loop, str) or not re.fullmatch(r"[\w.]+:[\w.]+", loop):
            raise fail("task.loop", f"must be 'package.module:function', got {loop!r}")
        moved = [key for key in _FASHION_MNIST_STUDY_KEYS if key in study]
        if moved:
            raise fail(f"study.{moved[0]}", "is a fashion-mnist option; a loop's options go in [task]")
        return loop, options, loop
    name = options.pop("name", DEFAULT_TASK)
    if not isinstance(name, str) or not name:
        raise fail("task.name", f"must be a built-in task or 'package.module:factory', got {name!r}")
    for key in _FASHION_MNIST_STUDY_KEYS:
        if key not in study:
            continue
        if name != "fashion-mnist":
            raise fail(f"study.{key}", f"is a fashion-mnist option; for task {name!r} put the task's options in [task]")
        if key in options:
            raise fail(f"study.{key}", "is also in [task]; give it once (in [task])")
        options[key] = study.pop(key)
    try:
        options = task_options(name, options)
    except UserError as exc:
        raise fail("task", str(exc)) from None
    if name == "fashion-mnist" and options["split"] == "holdout" and options["train_size"] + options["val_size"] > 60000:
        raise fail("task", f"the holdout split needs train_size + val_size <= 60000, got {options['train_size'] + options['val_size']}")
    return name, options, None


def _check_reachable(cond: str, wanted: Any, source: Any, key: str, fail: Any) -> None:
    """A ``when`` value the condition's hyperparameter can never take would drop the parameter silently."""
    if not isinstance(source, SearchParam):
        if source != wanted:
            raise fail(key, f"{cond} is fixed at {source!r}, so {cond} = {wanted!r} never holds")
    elif not source.contains(wanted):
        where = f"choices {list(source.choices)}" if source.type == "categorical" else f"range [{source.low}, {source.high}]"
        raise fail(key, f"{cond} = {wanted!r} never holds: it is outside {cond}'s {where}")


def check_objectives(spec: StudySpec, *, curves: Collection[str], by: str) -> None:
    """Every objective's curve is one that ``by`` (a task, a loop) records: ``curves``."""
    for objective in spec.parsed_objectives:
        if objective.curve not in curves:
            quality = sorted(c for c in curves if c.startswith("val_"))
            costs = [name for name, curve in metrics.COSTS.items() if curve in curves]
            raise UserError(
                f"{spec.path}: study.objectives: {by} does not record {objective.curve}, so {objective.spelling!r} "
                f"is not available; it records {', '.join(quality)} (best_/final_) and the costs {', '.join(costs)}"
            )


def constant_cost(spec: StudySpec) -> str | None:
    """One line when the study's cost objectives cannot vary over its search space (every trial trains as
    many epochs of the same batches with the same extra work): its Pareto front would be noise. None otherwise."""
    costs = [o.spelling for o in spec.parsed_objectives if o.is_cost]
    if not costs or spec.pbt is not None or len(costs) == len(spec.objectives):
        return None
    varying = cost_params(spec.method, clock=metrics.TRAIN_SECONDS.name in costs)
    if {p.name for p in spec.search} & varying:
        return None
    what = ("the Pareto front is noise: train_seconds varies only with the machine's load" if metrics.TRAIN_SECONDS.name in costs
            else "the front is the best trial alone")
    return (f"warning: {spec.name}: every trial costs the same ({', '.join(costs)} cannot vary over this search space), so "
            f"{what}; search one of {', '.join(sorted(varying))} or drop the cost objective")


def _parse_search(name: str, entry: dict[str, Any], param: Any, key: str, earlier: dict[str, Any], fail: Any) -> SearchParam:
    """``earlier`` maps each fixed hyperparameter to its value and each earlier searched one to its SearchParam."""
    _check_types(entry, _SEARCH_KEYS, key, fail)
    kind = entry.get("type")
    if kind not in ("int", "float", "categorical"):
        raise fail(f"{key}.type", f"must be int, float or categorical, got {kind!r}")
    when = entry.get("when", {})
    for cond in when:
        if cond not in earlier:
            raise fail(f"{key}.when", f"{cond!r} must be a fixed or earlier searched hyperparameter")
        _check_reachable(cond, when[cond], earlier[cond], f"{key}.when.{cond}", fail)
    if kind == "categorical":
        choices = entry.get("choices")
        if not choices:
            raise fail(f"{key}.choices", "a categorical parameter needs a non-empty choices list")
        extra = set(entry) - {"type", "choices", "when"}
        if extra:
            raise fail(f"{key}.{sorted(extra)[0]}", "not allowed for a categorical parameter")
        for choice in choices:
            try:
                param.validate(name, choice)
            except ValueError as exc:
                raise fail(f"{key}.choices", str(exc)) from exc
        return SearchParam(name, kind, choices=tuple(choices), when=when)
    if "choices" in entry:
        raise fail(f"{key}.choices", f"only for categorical parameters, not {kind}")
    for bound in ("low", "high"):
        if bound not in entry:
            raise fail(f"{key}.{bound}", "required")
        if kind == "int" and not isinstance(entry[bound], int):
            raise fail(f"{key}.{bound}", f"must be an integer for an int parameter, got {entry[bound]!r}")
        try:
            param.validate(name, entry[bound] if kind == "int" else float(entry[bound]))
        except ValueError as exc:
            raise fail(f"{key}.{bound}", str(exc)) from exc
    low, high = entry["low"], entry["high"]
    if low > high:
        raise fail(key, f"low must be <= high, got low={low} high={high}")
    log = entry.get("log", False)
    if log and low <= 0:
        raise fail(f"{key}.low", f"a log range needs low > 0, got low={low}")
    if log and "step" in entry:
        raise fail(f"{key}.step", "cannot be combined with log = true")
    step = entry.get("step")
    if step is not None:
        if kind == "int" and (not isinstance(step, int) or isinstance(step, bool)):
            raise fail(f"{key}.step", f"must be an integer for an int parameter, got {step!r}")
        if not step > 0:
            raise fail(f"{key}.step", f"must be > 0, got {step!r}")
        if step > high - low and high > low:
            raise fail(f"{key}.step", f"must fit the range [{low}, {high}], got {step!r}")
    if param.kind is int and kind != "int":
        raise fail(f"{key}.type", f"{name} is an integer hyperparameter: use type = \"int\"")
    return SearchParam(name, kind, low=low, high=high, log=log, step=step, when=when)


def check_corners(spec: StudySpec, *, defaults: Mapping[str, Any]) -> None:
    """Resolve the lowest and highest corner of the space over the task's ``defaults``, so a conflict
    fails now, not in trial 37."""
    for corner in ("low", "high"):
        values = dict(spec.fixed)
        for p in spec.search:
            if p.active(values):
                values[p.name] = p.choices[0 if corner == "low" else -1] if p.type == "categorical" else getattr(p, corner)
        try:
            resolve(spec.method, with_defaults(spec.method, values, defaults))
        except ValueError as exc:
            raise UserError(f"{spec.path}: search: the {corner} corner of the space is invalid: {exc}") from exc


def _only(table: dict[str, Any], allowed: set[str], prefix: str, fail: Any) -> None:
    for key in table:
        if key not in allowed:
            raise fail(f"{prefix}{key}", f"unknown key; allowed: {', '.join(sorted(allowed))}")


def _check_types(table: dict[str, Any], types: dict[str, Any], prefix: str, fail: Any) -> None:
    _only(table, set(types), f"{prefix}.", fail)
    for key, value in table.items():
        expected = types[key]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            table[key] = value = float(value)
        bad_bool = isinstance(value, bool) and expected is not bool
        if bad_bool or not isinstance(value, expected) or (isinstance(value, float) and not math.isfinite(value)):
            names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
            raise fail(f"{prefix}.{key}", f"must be {names}, got {value!r}")


def _choice(table: dict[str, Any], key: str, allowed: tuple[str, ...], fail: Any) -> None:
    if key in table and table[key] not in allowed:
        raise fail(f"study.{key}", f"unknown {key} {table[key]!r}; allowed: {', '.join(allowed)}")
