"""Ctrl-C that is never lost.

Python raises KeyboardInterrupt wherever the main thread happens to be; when
that is inside a finalizer (a garbage-collected SQLAlchemy object, say), the
exception is printed as "Exception ignored in ..." and swallowed, and the run
goes on as if nothing happened. The CLI's handler therefore also records the
request, and the training loop raises it again at its next batch.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_requested = threading.Event()


def install() -> None:
    """Route SIGINT through the recording handler (call from the main thread)."""
    signal.signal(signal.SIGINT, _on_sigint)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _requested.set()
    raise KeyboardInterrupt


def requested() -> bool:
    """Whether Ctrl-C was pressed in this process."""
    return _requested.is_set()


def raise_if_requested() -> None:
    """Raise KeyboardInterrupt again if Ctrl-C was pressed (its first exception may have been swallowed)."""
    if _requested.is_set():
        raise KeyboardInterrupt
