"""Fail and re-queue trials whose worker process on this machine is gone.

Optuna 5.0's JournalStorage has no heartbeat, so a killed journal worker's
trial would stay RUNNING forever. Every trial records ``host`` and ``pid`` in
its user_attrs; before a worker starts and after workers return, RUNNING
trials of this host whose process no longer exists are marked FAIL and their
parameters enqueued again (``retried_from`` in user_attrs). This also catches
dead local workers on RDB storages at once, without waiting for the
heartbeat's grace period; workers on other machines are left to the heartbeat.
"""

from __future__ import annotations

import os
import platform

import optuna
from optuna.trial import TrialState

from lrpo_study.views import record


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
        attrs = {record.RETRIED_FROM: t.user_attrs.get(record.RETRIED_FROM, t.number)}
        attrs.update({k: t.user_attrs[k] for k in (record.REFERENCE, *record.PBT_KEYS) if k in t.user_attrs})
        study.enqueue_trial(t.params, user_attrs=attrs)
        failed.append(t.number)
    return failed
