"""What we rely on from Optuna where it offers no public API: each test fails loudly on an upgrade that changes it.

- ``retrying.RetryingStorage`` implements ``BaseHeartbeat`` (``optuna.storages._heartbeat``) and its
  ``_get_stale_trial_ids``, which Optuna's public ``fail_stale_trials`` calls on the study's storage.
- ``views.trial.renote`` addresses a finished trial's dashboard note as ``optuna.Trial(study, frozen._trial_id)``.
"""

from __future__ import annotations

import time
from pathlib import Path

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from lrpo_study.study.retrying import RetryingStorage


def test_fail_stale_trials_asks_our_heartbeat_which_trials_are_stale(tmp_path: Path) -> None:
    inner = RDBStorage(f"sqlite:///{tmp_path / 'h.db'}", heartbeat_interval=1, grace_period=1)
    storage = RetryingStorage(inner, where="test", grace_period=60)  # abstract (TypeError) if Optuna renamed the hook
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)  # the beat is now older than Optuna's grace period (1 s; the database clock counts whole seconds)
    storage._recovered_at = time.monotonic()  # as after a database outage: no stale verdicts for our grace period
    optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == TrialState.RUNNING
    storage._recovered_at = float("-inf")
    optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == TrialState.FAIL


def test_a_frozen_trials_id_addresses_the_same_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ids.db'}"
    first = optuna.create_study(study_name="first", storage=url)
    first.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    second = optuna.create_study(study_name="second", storage=url)  # its trial ids differ from its numbers
    second.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    for frozen in second.get_trials():
        live = optuna.Trial(second, frozen._trial_id)
        assert (live.number, live.params) == (frozen.number, frozen.params)
