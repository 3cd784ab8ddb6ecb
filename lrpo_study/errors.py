"""Errors that mean "the user asked for something invalid": the CLI prints them as one line, exit 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a flag, a study file, a data directory, a storage URL, a settings file."""
