"""Declarative hyperparameter specs: one validator shared by the CLI, study files and exports."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Upper bounds for counts no run can mean, on a 2-core machine or a GPU cluster: past them a typo (1e12 epochs,
# a batch of 2**62) would start training, fill a disk with cache entries, or overflow on the way to the loop.
MAX_EPOCHS = 100_000
MAX_STEPS = 10**9
MAX_BATCH = 2**20


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its type, default and allowed range.

    ``low_open``/``high_open`` make a bound exclusive, so ``F in (0, 1)`` is
    ``Param(float, 0.95, low=0, high=1, low_open=True, high_open=True)``.
    """

    kind: type
    default: Any
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    optional: bool = False

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        kind = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                "list": "a non-empty list of numbers, each"}[self.kind.__name__]
        if self.low is None and self.high is None:
            return kind

        def show(bound: float) -> str:  # an integer bound in full: "[1, 1048576]", not "[1, 1.04858e+06]"
            return str(int(bound)) if self.kind is int else f"{bound:g}"

        if self.high is None:
            return f"{kind} {'>' if self.low_open else '>='} {show(self.low)}"  # type: ignore[arg-type]
        if self.low is None:
            return f"{kind} {'<' if self.high_open else '<='} {show(self.high)}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"{kind} in {left}{show(self.low)}, {show(self.high)}{right}"

    def validate(self, name: str, value: Any) -> Any:
        """Return ``value`` coerced to this type, or raise ``ValueError`` naming ``name``."""
        if value is None and self.optional:
            return None
        value = self._coerce(name, value)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{name} must be {self.describe()}, got {name}={value!r}")
        for number in value if isinstance(value, list) else [value]:
            self._check_range(name, number, value)
        return value

    def _check_range(self, name: str, number: Any, value: Any) -> None:
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"{name} must be finite, got {name}={value!r}")
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            raise ValueError(f"{name} must be {self.describe()}, got {name}={value!r}")
        if self.high is not None and (number > self.high or (self.high_open and number == self.high)):
            raise ValueError(f"{name} must be {self.describe()}, got {name}={value!r}")

    def _coerce(self, name: str, value: Any) -> Any:
        ok: bool
        if self.kind is bool:
            ok = isinstance(value, bool)
        elif self.kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                try:
                    value = float(value)
                except OverflowError:
                    raise ValueError(f"{name} must be finite, got an integer of {len(str(value))} digits") from None
        elif self.kind is list:  # of floats: JSON, TOML and Optuna's user_attrs give lists
            ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            if ok:
                try:
                    value = [float(v) for v in value]
                except OverflowError:
                    raise ValueError(f"{name} must be finite, got an integer of over 300 digits") from None
        else:
            ok = isinstance(value, self.kind)
        if not ok:
            raise ValueError(f"{name} must be {self.describe()}, got {name}={value!r}")
        return value


def validate_params(specs: dict[str, Param], values: dict[str, Any], *, what: str) -> dict[str, Any]:
    """Fill defaults and validate ``values`` against ``specs``; unknown keys are errors."""
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ValueError(
            f"unknown {what} hyperparameter {unknown[0]!r}; allowed: {', '.join(sorted(specs))}"
        )
    return {
        name: spec.validate(name, values[name]) if name in values else spec.default
        for name, spec in specs.items()
    }
