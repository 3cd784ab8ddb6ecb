"""What several commands share: the one-line argument errors, ``key=value`` flags, the storage and data flags."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any, NoReturn

from lrpo_study.errors import UserError

DEFAULT_STORAGE = "sqlite:///lrpo_study.db"  # runner.DEFAULT_STORAGE; not imported here, to keep start-up fast
STORAGE_VARIABLE = "LRPO_STORAGE"  # so a database password need not appear on a command line (ps, shell history)


class Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line (the CLI prints it, exit 2)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("lrpo_study").strip()  # the CLI's own prefix is printed once
        raise UserError(f"{command}: {message}" if command else message)


def parse_set(items: Sequence[str], *, flag: str = "--set") -> dict[str, Any]:
    """``key=value`` pairs; values are JSON scalars (1, 0.5, true, null) or plain strings."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} takes key=value, got {item!r}")
        if key in values:
            raise UserError(f"{flag} {key} given twice")
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            value = text
        if isinstance(value, (list, dict)):
            raise UserError(f"{flag} {key} takes a single value, got {text!r}")
        values[key] = value
    return values


def add_storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default=os.environ.get(STORAGE_VARIABLE) or DEFAULT_STORAGE,
                   help=f"sqlite:///PATH, journal:PATH or postgresql+psycopg://USER[:PASSWORD]@HOST/DB "
                        f"(default: ${STORAGE_VARIABLE}, else {DEFAULT_STORAGE})")


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder holding FashionMNIST/raw (default: $LRPO_DATA_DIR, else download)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto picks CUDA when present")


def add_cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", help="trajectory cache: shared epoch prefixes are trained once (default: beside a sqlite/journal file; off for servers)")
    p.add_argument("--no-cache", action="store_true", help="train every epoch of every run")
    p.add_argument("--cache-size-mb", type=int, default=2048, help="cache size limit; least recently used entries go first (default %(default)s)")


def cache_settings(args: argparse.Namespace) -> tuple[str | None, int]:
    """The trajectory cache's folder (None: off) and its size limit in bytes, from ``add_cache_args``' flags."""
    if args.cache_size_mb < 1:
        raise UserError(f"--cache-size-mb must be >= 1, got {args.cache_size_mb}")
    if args.no_cache and args.cache_dir:
        raise UserError("give --cache-dir or --no-cache, not both")
    return (None if args.no_cache else args.cache_dir or beside(args.storage, ".cache")), args.cache_size_mb * 1024**2


def seed(text: str) -> int:
    """A seed every library takes (numpy's and Optuna's samplers need [0, 2**32))."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32), got {value}")
    return value


def load_study(storage_url: str, name: str) -> Any:
    import optuna

    from lrpo_study.study.storage import open_storage

    storage = open_storage(storage_url, existing=True)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise UserError(f"no study {name!r} in the storage; it has: {', '.join(names) or 'none'}") from None


def artifact_folder(storage: str, given: str | None) -> str:
    """Where trial figures go and where the dashboard finds them: ``given``, else beside a SQLite or Journal
    file, else ``$LRPO_ARTIFACT_DIR`` or ``lrpo_study.artifacts`` in the working folder (a database server holds
    no files)."""
    from lrpo_study.training.checkpoints import server_artifacts

    return given or beside(storage, ".artifacts") or server_artifacts()


def beside(storage: str, suffix: str) -> str | None:
    """The folder a sqlite or journal file keeps beside it (``lrpo_study.db`` → ``lrpo_study.db.cache``)."""
    # imported here, not at the top: it imports torch, which --help and a mistyped flag should not wait for
    from lrpo_study.training.checkpoints import beside_storage

    return beside_storage(storage, suffix)
