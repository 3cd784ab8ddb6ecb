"""Parsers for the Optuna-facing subcommands (filled in by the optimize feature)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_parsers(sub: Any, add_data_args: Callable[[argparse.ArgumentParser], None]) -> None:
    return None
