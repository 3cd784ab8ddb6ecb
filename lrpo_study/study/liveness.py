"""Fail and re-queue trials whose worker process on this machine is gone.

Optuna 5.0's JournalStorage has no heartbeat, so a killed journal worker's
trial would stay RUNNING forever. Every trial records ``host`` and ``pid`` in
its user_attrs; before a worker starts and after workers return, RUNNING
trials of this host whose process no longer exists are marked FAIL and their
parameters enqueued again (``retried_from`` in user_attrs). This also catches
dead local workers on RDB storages at once, without waiting for the
heartbeat's grace period; workers on other machines are left to the heartbeat, whose retries
(``RetryStaleTrial``) carry the same ``retried_from``.
"""

from __future__ import annotations

import copy
import os
import platform
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from lrpo_study.views import record


def retry_attrs(t: FrozenTrial) -> dict[str, Any]:
    """What a retry of trial ``t`` starts with: the first trial it replaces, and what a fresh run of it keeps
    (the reference label, its PBT lineage) — not the dead run's host, pid or curves."""
    kept = {k: t.user_attrs[k] for k in (record.REFERENCE, *record.PBT_KEYS) if k in t.user_attrs}
    return {record.RETRIED_FROM: t.user_attrs.get(record.RETRIED_FROM, t.number), **kept}


class RetryStaleTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's heartbeat retry (a trial whose worker stopped beating is re-queued, ``max_retry`` times),
    whose retry carries ``retry_attrs`` like every other retry of ours."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trial = copy.copy(trial)
        trial.user_attrs = retry_attrs(trial)
        super().__call__(study, trial)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child that nobody reaped yet is a zombie: gone for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def fail_dead_local_trials(study: optuna.Study) -> list[int]:
    """Mark this host's orphaned RUNNING trials FAIL and enqueue their params; return their numbers."""
    host = platform.node()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get(record.PID)
        if t.user_attrs.get(record.HOST) != host or not isinstance(pid, int) or process_alive(pid):
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # it finished between our read and our write, or another process failed it first
        study.enqueue_trial(t.params, user_attrs=retry_attrs(t))
        failed.append(t.number)
    return failed
