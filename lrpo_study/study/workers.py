"""Worker processes that a Ctrl-C stops cleanly, never in the middle of a storage write.

A pool that SIGKILLs its workers on KeyboardInterrupt (joblib's loky does) can kill one while it
holds JournalFileStorage's lock file: the lock stays, and every later write (the parent failing the
trials) waits 30 s for Optuna to force it, printing warnings. Here a worker turns its first SIGINT or
SIGTERM into ``KeyboardInterrupt``: Optuna fails its running trial, the storage's context managers
release their locks, and the worker exits. The parent waits ``grace`` seconds for that before it kills.

Workers start with SIGINT ignored (inherited through exec) until they install their own handler, so a
Ctrl-C while they import torch prints nothing from them; the parent keeps SIGINT blocked meanwhile, so
its own copy of that Ctrl-C is delivered afterwards instead of lost.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections.abc import Callable, Sequence
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from lrpo_study import interrupts
from lrpo_study.errors import UserError, exception_chain

__all__ = ["GRACE_S", "run_workers"]

GRACE_S = 30.0
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def run_workers(
    target: Callable[..., None], arguments: Sequence[tuple[Any, ...]], *, grace: float = GRACE_S,
    on_death: Callable[[], object] = lambda: None,
) -> int:
    """Run ``target(*args)`` in one spawned process per ``args``; return how many died without a word.

    ``on_death`` is called as soon as one does (the others go on). A worker's exception is raised here
    once the other workers have stopped; so is a Ctrl-C (in this process or reported by a worker), as
    ``KeyboardInterrupt``.
    """
    processes: list[tuple[BaseProcess, Connection]] = []
    try:
        _start(target, arguments, processes)
        return _join(processes, on_death)
    except BaseException:
        _stop(processes, grace)
        raise


def _start(target: Callable[..., None], arguments: Sequence[tuple[Any, ...]], out: list[tuple[BaseProcess, Connection]]) -> None:
    context = multiprocessing.get_context("spawn")
    resource_tracker.ensure_running()  # started later, it would unblock SIGINT while it is ignored: a Ctrl-C lost
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for args in arguments:
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_worker_main, args=(send, target, args), name=f"lrpo_study worker {len(out)}")
            process.start()
            send.close()
            out.append((process, receive))
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a Ctrl-C meanwhile is delivered here


def _join(processes: list[tuple[BaseProcess, Connection]], on_death: Callable[[], object]) -> int:
    died = 0
    running = dict(processes)
    while running:
        for sentinel in wait([p.sentinel for p in running]):
            process = next(p for p in running if p.sentinel == sentinel)
            connection = running.pop(process)
            process.join()
            try:
                outcome, error = connection.recv()
            except EOFError:  # killed (out of memory, SIGKILL) before it could say anything
                outcome, error = "died", None
            if outcome == "error":
                raise _relinked(error)
            if outcome == "interrupted":
                raise KeyboardInterrupt
            if outcome == "died":
                died += 1
                on_death()
    return died


def _stop(processes: list[tuple[BaseProcess, Connection]], grace: float) -> None:
    """Ask the workers still running to stop (they fail their trials), then kill what is left after ``grace``."""
    alive = [p for p, _ in processes if p.is_alive()]
    for process in alive:
        process.terminate()  # SIGTERM: KeyboardInterrupt in the worker; one that had a Ctrl-C ignores it
    deadline = time.monotonic() + grace
    try:
        for process in alive:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: stop waiting
    finally:
        for process in alive:
            if process.is_alive():
                process.kill()
                process.join()


def _worker_main(connection: Connection, target: Callable[..., None], args: tuple[Any, ...]) -> None:
    for stop in _STOP_SIGNALS:
        signal.signal(stop, _stop_once)
    try:
        target(*args)
    except KeyboardInterrupt:
        connection.send(("interrupted", None))
    except BaseException as error:  # noqa: BLE001  (every failure goes to the parent, which reports it once)
        # The whole chain, not the last exception: pickling drops __cause__ and __context__, and what an error
        # means is often behind it (a storage gone for good behind Optuna's own error in a finally: block).
        chain = exception_chain(error)
        try:
            connection.send(("error", chain))
        except Exception:  # noqa: BLE001  (one that cannot be pickled, holding a lock or a socket: type and message)
            connection.send(("error", [_plain(e) for e in chain]))
    else:
        connection.send(("done", None))
    finally:
        connection.close()


def _plain(error: BaseException) -> BaseException:
    """An exception that crosses a pipe: a user error as itself, any other as its type and message."""
    return UserError(str(error)) if isinstance(error, UserError) else RuntimeError(f"{type(error).__name__}: {error}")


def _relinked(chain: list[BaseException]) -> BaseException:
    """The worker's exception with the exceptions behind it linked again (as ``__context__``)."""
    for outer, inner in zip(chain, chain[1:], strict=False):
        outer.__context__ = inner
    return chain[0]


def _stop_once(signum: int, frame: object) -> None:
    """The first stop request fails the running trial; later ones must not cut that failure's own write short."""
    if interrupts.requested():
        return
    interrupts.request()
    raise KeyboardInterrupt

