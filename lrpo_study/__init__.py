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
    "validate_settings": ".settings", "Task": ".tasks", "load_task": ".tasks", "TrialRun": ".trial_run",
    "TrialRunError": ".trial_run", "load_spec": ".config", "parse_spec": ".config", "create_study": ".runner",
}

__all__ = [
    "SCHEDULES", "MetricSchedule", "Schedule", "StepSchedule", "Task", "TrialRun", "TrialRunError", "__version__",
    "create_study", "load_schedule", "load_settings", "load_spec", "load_task", "make_schedule", "parse_spec",
    "validate_settings",
]

if TYPE_CHECKING:
    from .config import load_spec, parse_spec
    from .runner import create_study
    from .schedules import SCHEDULES, MetricSchedule, Schedule, StepSchedule, make_schedule
    from .settings import load_schedule, load_settings, validate_settings
    from .tasks import Task, load_task
    from .trial_run import TrialRun, TrialRunError


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lrpo_study' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
