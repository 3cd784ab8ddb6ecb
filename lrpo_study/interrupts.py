"""Ctrl-C that is never lost and never misreported.

Two ways a SIGINT goes astray if it is only raised as ``KeyboardInterrupt``:

- raised inside a finalizer (a garbage-collected SQLAlchemy object, say), it is printed as
  "Exception ignored in ..." and swallowed, and the run goes on;
- raised inside an import that C code runs (torch initialises NumPy from C and clears any
  error it gets, KeyboardInterrupt included), it is swallowed and leaves a half-imported
  module behind, whose missing attributes later look like unrelated errors.

So until a command holds something that must be closed (a running trial in a storage),
Ctrl-C ends the process on the spot: one line, exit status 130. Inside ``as_exception()``
it raises ``KeyboardInterrupt`` so the caller can fail its trial; the handler also records
the request, and the training loop raises it again at its next batch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import NoReturn

MESSAGE = "lrpo_study: interrupted"
EXIT_STATUS = 130

_requested = threading.Event()
_raise = threading.Event()  # set inside as_exception(): deliver Ctrl-C as KeyboardInterrupt


def install() -> None:
    """Route SIGINT through this module's handler (call first thing, from the main thread)."""
    signal.signal(signal.SIGINT, _on_sigint)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _requested.set()
    if not _raise.is_set():
        exit_now()
    raise KeyboardInterrupt


def report() -> int:
    """Say the one line (a KeyboardInterrupt reached the top) and return the exit status."""
    print(f"\n{MESSAGE}", file=sys.stderr)
    return EXIT_STATUS


def exit_now() -> NoReturn:
    """Print the one line and end the process with 130, without running finalizers or atexit."""
    with contextlib.suppress(Exception):  # output already written stays; a reentrant flush may refuse
        sys.stdout.flush()
    os.write(2, f"\n{MESSAGE}\n".encode())
    os._exit(EXIT_STATUS)


@contextlib.contextmanager
def as_exception() -> Iterator[None]:
    """Within: Ctrl-C raises ``KeyboardInterrupt`` (the caller fails its trial and closes its storage)."""
    was_set = _raise.is_set()
    _raise.set()
    try:
        yield
    finally:
        if not was_set:
            _raise.clear()


def request() -> None:
    """Record a stop request that arrived another way (a worker's SIGTERM from its parent)."""
    _requested.set()


def requested() -> bool:
    """Whether Ctrl-C was pressed in this process."""
    return _requested.is_set()


def raise_if_requested() -> None:
    """Raise KeyboardInterrupt again if Ctrl-C was pressed (its first exception may have been swallowed)."""
    if _requested.is_set():
        raise KeyboardInterrupt
