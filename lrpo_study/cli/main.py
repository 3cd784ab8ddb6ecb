"""lrpo_study: Optuna studies of learning-rate schedules on real training runs.

Train once (run), search (optimize), re-train chosen trials on the untouched test data (confirm),
compare the studies (report), take a tuned schedule home (export), browse them (dashboard)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from lrpo_study import interrupts
from lrpo_study.errors import UserError, exception_chain

from . import confirm, dashboard, export, optimize, report, run
from ._common import Parser

COMMANDS = (run, optimize, export, report, confirm, dashboard)  # the order --help lists them in


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="lrpo_study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def entry() -> NoReturn:
    """The ``lrpo-study`` console script: ``python -m lrpo_study``."""
    interrupts.install()
    sys.exit(main())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (2: bad input, 130: interrupted)."""
    try:
        args = build_parser().parse_args(argv)
        status = int(args.handler(args))
    except KeyboardInterrupt:
        return interrupts.report()
    except Exception as exc:
        if interrupts.requested():  # whatever failed, a Ctrl-C swallowed on the way (a finalizer, C code) is the cause
            return interrupts.report()
        if isinstance(exc, UserError):
            print(f"lrpo_study: error: {exc}", file=sys.stderr)
            return 2
        # a storage that fails after it was opened: damaged, read-only, full disk
        message = storage_failure(exc, getattr(args, "storage", None))
        if message is None:
            raise
        print(f"lrpo_study: error: {message}", file=sys.stderr)
        return 2
    if status != interrupts.EXIT_STATUS and interrupts.requested():
        return interrupts.report()
    return status


def storage_failure(exc: BaseException, url: str | None) -> str | None:
    """One line for an error of the storage (or of the disk under it), None for any other error."""
    import errno

    import optuna
    import sqlalchemy.exc

    from lrpo_study.study.storage import mask_text, mask_url

    def is_storage(e: BaseException) -> bool:
        disk = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EDQUOT)
        return disk or isinstance(e, (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError))

    # Optuna can mask a failed storage write behind its own error ("Should not reach"): follow the chain.
    chain = exception_chain(exc)
    ours = next((e for e in chain if isinstance(e, UserError)), None)  # e.g. StorageUnavailable behind Optuna's error
    if ours is not None:
        return str(ours)
    found = next((e for e in reversed(chain) if is_storage(e)), None)  # the root cause says most
    if found is None:
        return None
    text = (str(found).strip() or type(found).__name__).splitlines()[0]
    where = f" {mask_url(url)}" if url else ""
    if url:
        text = mask_text(text, url)
    return (f"storage{where} failed: {text} (is the file damaged, read-only or on a full disk? "
            "the trials already stored are kept)")
