"""lrpo_study: Optuna studies that put learning-rate schedule claims to the test.

Importing this package is cheap: the public names below load their module (torch, never
optuna) on first use, so ``python -m lrpo_study`` can answer Ctrl-C while torch imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

_EXPORTS = {
    "SCHEDULES": ".schedules", "MetricSchedule": ".schedules", "Schedule": ".schedules", "StepSchedule": ".schedules",
    "make_schedule": ".schedules", "load_schedule": ".integrations.settings", "load_optimizer": ".integrations.settings", "load_settings": ".integrations.settings",
    "validate_settings": ".integrations.settings", "Task": ".tasks", "load_task": ".tasks", "TrialRun": ".study.trial_run",
    "TrialRunError": ".study.trial_run", "load_spec": ".study.spec", "parse_spec": ".study.spec",
    "create_study": ".study.runner",
}

__all__ = [
    "SCHEDULES", "MetricSchedule", "Schedule", "StepSchedule", "Task", "TrialRun", "TrialRunError", "__version__",
    "create_study", "load_optimizer", "load_schedule", "load_settings", "load_spec", "load_task", "make_schedule", "parse_spec",
    "validate_settings",
]

if TYPE_CHECKING:
    from lrpo_study.integrations.settings import (
        load_optimizer,
        load_schedule,
        load_settings,
        validate_settings,
    )
    from lrpo_study.schedules import (
        SCHEDULES,
        MetricSchedule,
        Schedule,
        StepSchedule,
        make_schedule,
    )
    from lrpo_study.study.runner import create_study
    from lrpo_study.study.spec import load_spec, parse_spec
    from lrpo_study.study.trial_run import TrialRun, TrialRunError
    from lrpo_study.tasks import Task, load_task


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lrpo_study' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
