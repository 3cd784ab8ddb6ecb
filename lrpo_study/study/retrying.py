"""An Optuna storage that rides out a database server's outage.

Every storage call is retried with backoff while the error is a lost or refused
connection (``sqlalchemy.exc.OperationalError`` / ``InterfaceError`` anywhere in
the chain, including behind Optuna's ``StorageInternalError``), for up to
``budget`` seconds per call; then ``StorageUnavailable`` (a one-line error).

The heartbeat is kept alive across an outage: a failed beat is retried and, once
the budget is spent, skipped rather than raised (an exception would end Optuna's
heartbeat thread for the rest of the trial). After an outage, every worker's
last beat is old through no fault of its own, so for one grace period this
process reports no stale trials: the live workers beat again in the meantime,
and a trial whose worker really died is failed one grace period later.

A call whose commit reached the server just before the connection dropped may be
retried: a state change then finds the trial already in the state it asked for,
which counts as done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import (
    BaseHeartbeat,  # no public name; pinned: tests/test_upgrade_pins.py
)
from optuna.trial import FrozenTrial, TrialState

from lrpo_study.errors import UserError, exception_chain


class StorageUnavailable(UserError):
    """The storage stayed unreachable for the whole retry budget."""


def is_transient(exc: BaseException) -> bool:
    """A lost or refused connection, possibly wrapped by Optuna or SQLAlchemy."""
    return any(
        isinstance(e, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))
        or (isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated)
        for e in exception_chain(exc)
    )


class RetryingStorage(BaseStorage, BaseHeartbeat):
    """Wraps a storage (and its heartbeat); see the module docstring."""

    def __init__(self, inner: BaseStorage, *, where: str, budget: float = 120.0, grace_period: float = 60.0) -> None:
        self._inner = inner
        self._where = where
        self._budget = budget
        self._grace = grace_period
        self._recovered_at = float("-inf")

    def _retry(self, name: str, call: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + self._budget
        delay, failed = 0.25, False
        while True:
            try:
                result = call()
            except optuna.exceptions.UpdateFinishedTrialError:
                if failed and name == "set_trial_state_values":
                    return True  # our own earlier attempt was committed before the connection dropped
                raise
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise StorageUnavailable(
                        f"storage {self._where} unreachable for {self._budget:.0f} s ({first}); the trials already "
                        "stored are kept: run the same command again when it is back"
                    ) from None
                failed = True
                time.sleep(delay)
                delay = min(2 * delay, 5.0)
                continue
            if failed:
                self._recovered_at = time.monotonic()
            return result

    # Heartbeat: never raise out of a beat, and no stale verdicts right after an outage.
    def record_heartbeat(self, trial_id: int) -> None:
        assert isinstance(self._inner, BaseHeartbeat)
        try:
            self._retry("record_heartbeat", lambda: self._inner.record_heartbeat(trial_id))  # type: ignore[attr-defined]
        except StorageUnavailable:
            pass  # the main thread meets the same outage and stops with one line

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:  # what fail_stale_trials calls (pinned)
        if time.monotonic() - self._recovered_at < self._grace:
            return []
        return list(self._retry("_get_stale_trial_ids", lambda: self._inner._get_stale_trial_ids(study_id)))  # type: ignore[attr-defined]

    def get_heartbeat_interval(self) -> int | None:
        return self._inner.get_heartbeat_interval() if isinstance(self._inner, BaseHeartbeat) else None

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._inner.get_heartbeat_stale_trial_callback() if isinstance(self._inner, BaseHeartbeat) else None

    def check_trial_is_updatable(self, trial_id: int, trial_state: TrialState) -> None:
        self._inner.check_trial_is_updatable(trial_id, trial_state)

    def remove_session(self) -> None:
        self._inner.remove_session()


    # Every other storage operation goes to the wrapped storage through ``_retry``.
    def create_new_study(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("create_new_study", lambda: self._inner.create_new_study(*args, **kwargs))

    def delete_study(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("delete_study", lambda: self._inner.delete_study(*args, **kwargs))

    def set_study_user_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("set_study_user_attr", lambda: self._inner.set_study_user_attr(*args, **kwargs))

    def set_study_system_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("set_study_system_attr", lambda: self._inner.set_study_system_attr(*args, **kwargs))

    def get_study_id_from_name(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_study_id_from_name", lambda: self._inner.get_study_id_from_name(*args, **kwargs))

    def get_study_name_from_id(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_study_name_from_id", lambda: self._inner.get_study_name_from_id(*args, **kwargs))

    def get_study_directions(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_study_directions", lambda: self._inner.get_study_directions(*args, **kwargs))

    def get_study_user_attrs(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_study_user_attrs", lambda: self._inner.get_study_user_attrs(*args, **kwargs))

    def get_study_system_attrs(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_study_system_attrs", lambda: self._inner.get_study_system_attrs(*args, **kwargs))

    def get_all_studies(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_all_studies", lambda: self._inner.get_all_studies(*args, **kwargs))

    def create_new_trial(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("create_new_trial", lambda: self._inner.create_new_trial(*args, **kwargs))

    def set_trial_param(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("set_trial_param", lambda: self._inner.set_trial_param(*args, **kwargs))

    def get_trial_id_from_study_id_trial_number(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_trial_id_from_study_id_trial_number", lambda: self._inner.get_trial_id_from_study_id_trial_number(*args, **kwargs))

    def get_trial_number_from_id(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_trial_number_from_id", lambda: self._inner.get_trial_number_from_id(*args, **kwargs))

    def get_trial_param(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_trial_param", lambda: self._inner.get_trial_param(*args, **kwargs))

    def set_trial_state_values(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("set_trial_state_values", lambda: self._inner.set_trial_state_values(*args, **kwargs))

    def set_trial_intermediate_value(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("set_trial_intermediate_value", lambda: self._inner.set_trial_intermediate_value(*args, **kwargs))

    def set_trial_user_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("set_trial_user_attr", lambda: self._inner.set_trial_user_attr(*args, **kwargs))

    def set_trial_system_attr(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("set_trial_system_attr", lambda: self._inner.set_trial_system_attr(*args, **kwargs))

    def get_trial(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_trial", lambda: self._inner.get_trial(*args, **kwargs))

    def get_all_trials(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_all_trials", lambda: self._inner.get_all_trials(*args, **kwargs))

    def get_n_trials(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_n_trials", lambda: self._inner.get_n_trials(*args, **kwargs))

    def get_best_trial(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_best_trial", lambda: self._inner.get_best_trial(*args, **kwargs))

    def get_trial_params(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_trial_params", lambda: self._inner.get_trial_params(*args, **kwargs))

    def get_trial_user_attrs(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_trial_user_attrs", lambda: self._inner.get_trial_user_attrs(*args, **kwargs))

    def get_trial_system_attrs(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("get_trial_system_attrs", lambda: self._inner.get_trial_system_attrs(*args, **kwargs))
