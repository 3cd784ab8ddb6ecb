"""A trial that fails fails alone: its reason recorded and said once, the study going on.

An exception in a trial (the user's loop or model raising, a loop that returned before its planned
epochs, one that ran past ``--trial-timeout``) fails that trial: the last line of what went wrong goes
into its record (``record.FAIL_REASON``) and onto stderr as one line, and the next trial starts. After
``--max-failures`` such trials in one run the study stops with one line naming them. What is not the
trial's own failure still ends the run as before: bad input (``UserError``, a misused ``TrialRun``), a
storage gone for good, a Ctrl-C.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from lrpo_study import interrupts
from lrpo_study.errors import UserError, exception_chain
from lrpo_study.views import record

__all__ = ["FailsAlone", "TrialFailedAlone", "stop_after_failures"]

_DISK = (errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EDQUOT)


class TrialFailedAlone(Exception):
    """This trial failed; its reason is recorded and was said (``study.optimize`` catches it and goes on)."""


class _TimedOut(Exception):
    pass


def _not_the_trial_s_own(exc: BaseException) -> bool:
    """Failures that end the run: bad input, the storage or its disk, Optuna's own control flow."""
    for e in exception_chain(exc):
        if isinstance(e, (UserError, optuna.TrialPruned, optuna.exceptions.StorageInternalError,
                          optuna.exceptions.UpdateFinishedTrialError, sqlalchemy.exc.SQLAlchemyError)):
            return True  # the last two: the storage, or another process that ended this trial (a stale heartbeat)
        if isinstance(e, OSError) and e.errno in _DISK:
            return True
    return False


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[-1]}" if text else type(exc).__name__


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """``_TimedOut`` in this (the main) thread after ``seconds``: a hung loop is interrupted where it waits."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise _TimedOut

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class FailsAlone:
    """``objective``, whose own failures fail only its trial (``TrialFailedAlone``); ``passes``: exceptions
    that mean something else to the caller (raised as they are). ``failures`` counts the trials it failed."""

    def __init__(self, objective: Callable[[optuna.Trial], Any], *, passes: tuple[type[BaseException], ...] = (),
                 timeout: float | None = None) -> None:
        self.objective, self.passes, self.timeout = objective, passes, timeout
        self.failures = 0

    def __call__(self, trial: optuna.Trial) -> Any:
        try:
            with _time_limit(self.timeout):
                return self.objective(trial)
        except self.passes:
            raise
        except Exception as exc:
            if interrupts.requested():  # a Ctrl-C that came out as another error on its way up
                raise KeyboardInterrupt from exc
            if _not_the_trial_s_own(exc):
                raise
            if isinstance(exc, _TimedOut):
                reason = f"ran longer than --trial-timeout {self.timeout:g} s"
            else:
                reason = _last_line(exc)
                trial.set_user_attr(record.FAIL_TRACEBACK, "".join(traceback.format_exception(exc)[-6:])[-4000:])
            trial.set_user_attr(record.FAIL_REASON, reason)
            tqdm.write(f"lrpo_study: trial {trial.number} failed: {reason}", file=sys.stderr)
            self.failures += 1
            raise TrialFailedAlone(reason) from None


def _failed_alone(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if record.FAIL_REASON in t.user_attrs]


def stop_after_failures(study: optuna.Study, limit: int) -> Callable[[optuna.Study, FrozenTrial], None]:
    """A callback that ends the run (``UserError``) once ``limit`` trials failed alone since it was made."""
    before = {t.number for t in _failed_alone(study)}

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        failed = [t for t in _failed_alone(study) if t.number not in before]
        if limit and len(failed) >= limit:
            numbers = ", ".join(str(t.number) for t in failed)
            raise UserError(
                f"{study.study_name}: {len(failed)} trials failed (--max-failures {limit}): trials {numbers}; the last: "
                f"{failed[-1].user_attrs[record.FAIL_REASON]}"
            )

    return callback
