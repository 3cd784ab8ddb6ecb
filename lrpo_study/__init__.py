"""lrpo_study: Optuna studies that put learning-rate schedule claims to the test."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
