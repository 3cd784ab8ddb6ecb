"""Per-epoch training checkpoints, so a retried trial resumes from its last finished epoch.

A checkpoint is keyed by everything that determines the run (study, method,
model, split, seed, data sizes, every hyperparameter): a retried trial has
the same key as the trial it replaces, and two trials with identical
settings would train identically anyway. Files are written atomically
(temporary file + ``os.replace``) with a SHA-256 digest of their payload in
the first line, and read back only when the digest matches, then with
``torch.load(weights_only=True)`` (which checks the archive's structure, not
its tensor bytes: one flipped byte in a weight would load). A file that fails
either check is ignored with a warning and the trial starts from zero.
Checkpoints are an optimisation: when one cannot be written (a full disk, a
read-only folder) the partial file is removed, one warning is printed, and the
run goes on without them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from lrpo_study import interrupts


def checkpoint_key(**determining: Any) -> str:
    return hashlib.sha256(json.dumps(determining, sort_keys=True, default=str).encode()).hexdigest()[:32]


# The first line of every file: this magic, the payload's SHA-256 in hex, a newline; then torch.save's bytes.
_MAGIC = b"lrpo-sha256 "
_HEADER_BYTES = len(_MAGIC) + 64 + 1


class DamagedFile(Exception):
    """A stored state whose bytes are not the ones written (or no state at all)."""


def encode(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    return _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def decode(data: bytes) -> dict[str, Any]:
    """The state in ``data``, or ``DamagedFile`` naming what is wrong; the digest is checked before torch reads."""
    header, payload = data[:_HEADER_BYTES], data[_HEADER_BYTES:]
    if not header.startswith(_MAGIC) or not header.endswith(b"\n"):
        raise DamagedFile("no digest header (written by another version, or not a state at all)")
    if hashlib.sha256(payload).hexdigest().encode() != header[len(_MAGIC):-1]:
        raise DamagedFile("its bytes do not match the digest written with it")
    try:
        buffer = io.BytesIO(payload)
        state = torch.load(buffer, weights_only=True)
    except Exception as exc:  # noqa: BLE001  (whatever torch says of a bad archive, it is a damaged file)
        raise DamagedFile(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from None
    if not isinstance(state, dict):
        raise DamagedFile(f"it holds a {type(state).__name__}, not a state")
    return state


def read_state(path: Path) -> dict[str, Any] | None:
    """The state stored at ``path``; None when there is none; ``DamagedFile`` when its bytes are not what was
    written. A Ctrl-C while torch reads comes out of torch as an error: it is the interrupt, not damage (the
    caller would delete an intact entry)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return decode(data)
    except DamagedFile as exc:
        if interrupts.requested():
            raise KeyboardInterrupt from exc
        raise


# A temporary file this old belongs to a writer that was killed, not to one still writing.
STALE_TMP_SECONDS = 600


class CheckpointStore:
    def __init__(self, directory: str | os.PathLike[str], *, what: str = "checkpoints") -> None:
        self.directory = Path(directory)
        self.what = what
        self.disabled = False  # set after a write failed: we stop trying, and say so once

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    def save(self, key: str, state: dict[str, Any]) -> bool:
        """Write atomically; on a write error drop the partial file, warn once, return False."""
        if self.disabled:
            return False
        tmp: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            data = encode(state)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{key}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path(key))
            return True
        except (OSError, RuntimeError) as exc:  # torch.save reports a failed write (or a Ctrl-C in it) as RuntimeError
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            if interrupts.requested():
                # A Ctrl-C inside torch.save's write comes out as that RuntimeError: it is the interrupt, not the disk.
                raise KeyboardInterrupt from exc
            self.disabled = True
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"lrpo_study: warning: cannot write {self.what} in {self.directory} ({reason}); going on without them",
                  file=sys.stderr, flush=True)
            return False
        except BaseException:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise

    def remove_stale_tmp(self) -> int:
        """Delete temporary files left by killed writers; return how many."""
        removed = 0
        for path in self.directory.glob(".*.tmp"):
            try:
                if time.time() - path.stat().st_mtime > STALE_TMP_SECONDS:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed

    def load(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        try:
            return read_state(path)
        except (DamagedFile, OSError) as exc:  # a damaged file must not stop the study
            warnings.warn(f"ignoring unreadable checkpoint {path}: {exc}", stacklevel=2)
            return None

    def discard(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


# Trial figures of a study on a database server (which holds no files): $LRPO_ARTIFACT_DIR, else this folder in
# the working folder of optimize and dashboard.
SERVER_ARTIFACTS = "lrpo_study.artifacts"
ARTIFACT_DIR_ENV = "LRPO_ARTIFACT_DIR"


def server_artifacts() -> str:
    return os.environ.get(ARTIFACT_DIR_ENV) or SERVER_ARTIFACTS


def beside_storage(storage_url: str, suffix: str) -> str | None:
    """``FILE + suffix`` for a SQLite or Journal file; None for server storages (no shared disk implied)."""
    for prefix in ("sqlite:///", "journal:"):
        if storage_url.startswith(prefix):
            path = storage_url[len(prefix):]
            return None if path in ("", ":memory:") else path + suffix
    return None
