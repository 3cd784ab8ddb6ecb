"""The command line, one file per command (``run``, ``optimize``, ``export``, ``report``, ``confirm``,
``dashboard``); ``main`` parses and dispatches. Commands import what they run when they run, so ``--help``
and a mistyped flag answer before torch loads."""

from .main import entry, main

__all__ = ["entry", "main"]
