"""Storage URL → Optuna storage, with the password masked wherever the URL is shown.

- ``sqlite:///PATH``: one worker (the default, ``sqlite:///lrpo_study.db``);
- ``journal:PATH``: Optuna's JournalStorage on a file, for several processes on one machine;
- ``postgresql+psycopg://USER[:PASSWORD]@HOST[:PORT]/DB`` (or ``mysql+...``): several machines.

RDB storages get Optuna's heartbeat: a trial whose worker stops beating for
``grace_period`` seconds is failed and re-queued
(``liveness.RetryStaleTrial``) by the next worker that starts a trial;
database servers' storages also ride out an outage (``lrpo_study.study.retrying``).
"""

from __future__ import annotations

import os
import random
import re
import sys
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from lrpo_study.errors import UserError

from .liveness import RetryStaleTrial
from .retrying import RetryingStorage, StorageUnavailable, is_transient

_RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
# The user info runs from "//" to the *last* "@": a password may hold an unencoded "@" (or ":" or "/").
_USER_INFO = re.compile(r"(?P<head>[a-z0-9+.-]+://)(?P<info>\S*)@", re.IGNORECASE)


def _secret(url: str) -> str:
    """What ``mask_url`` hides: everything after the user name's ":" up to the last "@" (all of it when
    there is no ":" but an "@" inside, which can only be part of a password)."""
    match = _USER_INFO.match(url)
    if match is None:
        return ""
    user, colon, password = match["info"].partition(":")
    return password if colon else (user if "@" in user else "")


def mask_url(url: str) -> str:
    """``scheme://user:***@host/db``: the only form of a storage URL the tool ever prints."""
    secret = _secret(url)
    if not secret:
        return url
    match = _USER_INFO.match(url)
    assert match is not None  # _secret found one
    user = match["info"][: len(match["info"]) - len(secret)]
    return f"{match['head']}{user}***@{url[match.end():]}"


def mask_text(text: str, url: str) -> str:
    """Mask ``url``'s password wherever it appears in ``text`` (driver error messages echo it, or a part of it)."""
    secret = _secret(url)
    text = text.replace(url, mask_url(url))
    if secret:
        for part in {secret, *secret.split("@")} - {""}:  # a driver may show the part after an "@" as the host
            text = text.replace(part, "***")
    return text


def is_rdb(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0].lower() in _RDB_SCHEMES


def repair_torn_journal(path: str) -> None:
    """A journal whose last write was cut short (a full disk, a killed process) ends in a partial
    line; appending after it would make the whole file unreadable. Under the journal's own lock,
    move the partial line to ``PATH.torn-N`` (it was never a complete record) and say so."""
    journal = Path(path)
    if not journal.is_file():
        return
    lock = JournalFileSymlinkLock(path)
    lock.acquire()
    try:
        with journal.open("rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(max(0, size - 1))
            if f.read(1) == b"\n":
                return
            f.seek(0)
            data = f.read()
            keep = data.rfind(b"\n") + 1
            n = 1
            while Path(f"{path}.torn-{n}").exists():
                n += 1
            Path(f"{path}.torn-{n}").write_bytes(data[keep:])
            f.truncate(keep)
    finally:
        lock.release()
    print(f"lrpo_study: warning: {path} ended in a partial record (an interrupted write); "
          f"moved its {len(data) - keep} bytes to {path}.torn-{n} and continued", file=sys.stderr, flush=True)


# Two processes creating Optuna's schema in one empty database at once: one of them loses a race inside
# CREATE TABLE / CREATE TYPE (PostgreSQL's catalog: "duplicate key ... pg_type_typname_nsp_index") or the
# first insert of the version row. The winner's schema is whole once it commits; the loser tries again.
_SCHEMA_ATTEMPTS = 6


def _schema_race(exc: BaseException) -> bool:
    import sqlalchemy.exc

    text = str(exc)
    return isinstance(exc, sqlalchemy.exc.IntegrityError) or (
        isinstance(exc, sqlalchemy.exc.ProgrammingError) and "already exists" in text
    ) or "pg_type_typname_nsp_index" in text


def _create_rdb(url: str, *, heartbeat_interval: int, grace_period: int, wait_seconds: float) -> RDBStorage:
    """Optuna's RDBStorage; a lost schema race is tried again, and for ``wait_seconds`` so is a server that
    does not answer (a worker process started while it was away: its parent already reached it)."""
    deadline = time.monotonic() + wait_seconds
    races = 0
    while True:
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna 5; we rely on it knowingly
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period, heartbeat_stale_trial_callback=RetryStaleTrial(max_retry=3),
                )
        except Exception as exc:
            if _schema_race(exc) and races < _SCHEMA_ATTEMPTS:
                races += 1
                time.sleep(0.1 * races + random.random() * 0.1)
            elif is_transient(exc) and time.monotonic() + 1.0 < deadline:
                time.sleep(1.0)
            elif is_transient(exc) and wait_seconds:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise StorageUnavailable(
                    f"storage {mask_url(url)} unreachable for {wait_seconds:.0f} s ({mask_text(first, url)}); the trials "
                    "already stored are kept: run the same command again when it is back"
                ) from None
            else:
                raise


def _missing_file(url: str, scheme: str) -> str | None:
    """The path of a SQLite or Journal storage's file when it does not exist; None otherwise."""
    path = url[len("journal:"):] if scheme == "journal" else url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
    if not path or path == ":memory:" or Path(path).exists():
        return None
    return path


def open_storage(
    url: str, *, heartbeat_interval: int = 20, grace_period: int = 60, retry_seconds: float = 120.0,
    existing: bool = False, wait_for_server: bool = False,
) -> optuna.storages.BaseStorage:
    """Open (and, for RDB, connect to) the storage; every failure is a one-line ``UserError``. With
    ``existing`` (the commands that only read: report, export, confirm, dashboard) a SQLite or Journal
    file that is not there is that error, not a new empty file. With ``wait_for_server`` a database server
    that does not answer is waited for up to ``retry_seconds`` (else a refused connection is final at once:
    a wrong host or port)."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    missing = _missing_file(url, scheme) if existing else None
    if missing is not None:
        raise UserError(f"storage {mask_url(url)} does not exist (no file {missing!r}); "
                        "optimize creates it, the other commands read it")
    try:
        if scheme == "journal":
            path = url[len("journal:"):]
            if not path:
                raise UserError("journal storage needs a path: journal:PATH")
            repair_torn_journal(path)
            return JournalStorage(JournalFileBackend(path))
        if scheme in _RDB_SCHEMES:
            rdb = _create_rdb(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                              wait_seconds=retry_seconds if wait_for_server and scheme != "sqlite" else 0.0)
            if scheme == "sqlite":  # a local file has no outages; its errors (read-only, damaged) are final
                return rdb
            return RetryingStorage(
                optuna.storages.get_storage(rdb), where=mask_url(url), budget=retry_seconds, grace_period=grace_period,
            )
    except UserError:
        raise
    except Exception as exc:  # sqlalchemy / driver / OS errors: a bad URL, host, password or path
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot open storage {mask_url(url)}: {mask_text(first, url)}") from None
    raise UserError(
        f"unknown storage {mask_url(url)!r}; use sqlite:///PATH, journal:PATH or postgresql+psycopg://USER@HOST/DB"
    )
