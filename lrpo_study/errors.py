"""Errors that mean "the user asked for something invalid": the CLI prints them as one line, exit 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a flag, a study file, a data directory, a storage URL, a settings file."""


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception behind it (``__cause__``, else ``__context__``), outermost first.

    Libraries wrap a root cause (Optuna hides a failed storage write behind its own error), so
    deciding what a failure means takes the whole chain.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
