"""lrpo_study: Optuna studies that put learning-rate schedule claims to the test.

Importing this package (and ``lrpo_study.schedules``) needs torch only, not optuna.
"""

from __future__ import annotations

__version__ = "0.2.0"

from .schedules import SCHEDULES, MetricSchedule, Schedule, StepSchedule, make_schedule  # noqa: E402
from .settings import load_schedule, load_settings, validate_settings  # noqa: E402
from .tasks import Task, load_task  # noqa: E402

__all__ = [
    "SCHEDULES", "MetricSchedule", "Schedule", "StepSchedule", "Task", "__version__", "load_schedule", "load_settings", "load_task",
    "make_schedule", "validate_settings",
]
