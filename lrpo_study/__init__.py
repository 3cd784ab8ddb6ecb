"""lrpo_study: Optuna studies that put learning-rate schedule claims to the test.

Importing this package is cheap: the public names below load their module (torch, never
optuna) on first use, so ``python -m lrpo_study`` can answer Ctrl-C while torch imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.4.0"

_EXPORTS = {
    "SCHEDULES": ".schedules", "MetricSchedule": ".schedules", "Schedule": ".schedules", "StepSchedule": ".schedules",
    "make_schedule": ".schedules", "load_schedule": ".settings", "load_settings": ".settings",
    "validate_settings": ".settings", "Task": ".tasks", "load_task": ".tasks",
}

__all__ = [
    "SCHEDULES", "MetricSchedule", "Schedule", "StepSchedule", "Task", "__version__", "load_schedule", "load_settings",
    "load_task", "make_schedule", "validate_settings",
]

if TYPE_CHECKING:
    from .schedules import SCHEDULES, MetricSchedule, Schedule, StepSchedule, make_schedule
    from .settings import load_schedule, load_settings, validate_settings
    from .tasks import Task, load_task


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lrpo_study' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
