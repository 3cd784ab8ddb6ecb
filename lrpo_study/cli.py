"""Command line: ``python -m lrpo_study {run,optimize,report,export,dashboard}``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .errors import UserError
from .hyperparameters import METHODS


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line (the CLI prints it, exit 2)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message}")


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are JSON scalars (1, 0.5, true, null) or plain strings."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set takes key=value, got {item!r}")
        if key in values:
            raise UserError(f"--set {key} given twice")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if isinstance(value, (list, dict)):
            raise UserError(f"--set {key} takes a single value, got {text!r}")
        values[key] = value
    return values


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder holding FashionMNIST/raw (default: $LRPO_DATA_DIR, else download)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto picks CUDA when present")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lrpo_study", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="train once with one schedule and print the curves")
    run.add_argument("--method", required=True, choices=METHODS)
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any hyperparameter (repeatable)")
    run.add_argument("--model", default="mlp", choices=("mlp", "cnn"))
    run.add_argument("--epochs", type=int, help="epochs (default 16; for lrpo split like the paper's 10+1+5)")
    run.add_argument("--seed", type=int, default=42)
    run.add_argument("--split", default="holdout", choices=("paper", "holdout"))
    run.add_argument("--train-size", type=int, default=20000)
    run.add_argument("--val-size", type=int, default=4000)
    run.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    _add_data_args(run)

    from . import _optimize_cli  # noqa: PLC0415  (keeps `run` importable without optuna's import cost)

    _optimize_cli.add_parsers(sub, _add_data_args)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .data import load_split
    from .hyperparameters import resolve
    from .train import EpochMetrics, resolve_device, train

    values = parse_set(args.set)
    if args.epochs is not None:
        if "epochs" in values:
            raise UserError("give epochs once: --epochs or --set epochs=N")
        values["epochs"] = args.epochs
    try:
        hp = resolve(args.method, values)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    device = resolve_device(args.device)
    data = load_split(
        split=args.split, data_dir=args.data_dir, seed=args.seed, train_size=args.train_size,
        val_size=args.val_size,
    ).to(device)

    def table_row(m: EpochMetrics) -> None:
        if m.epoch == 1:
            tqdm.write(f"{'epoch':>5} {'train_loss':>10} {'val_loss':>9} {'val_acc':>8} {'lr':>9} {'seconds':>8}")
        tqdm.write(f"{m.epoch:>5} {m.train_loss:>10.4f} {m.val_loss:>9.4f} {m.val_accuracy:>8.4f} {m.lr:>9.5f} {m.seconds:>8.3f}")

    result = train(
        method=args.method, hyperparameters=hp, data=data, model_name=args.model, seed=args.seed,
        device=device, on_epoch=() if args.json else (table_row,), progress=True,
    )
    summary = result.summary() | {"split": args.split}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"best val accuracy {result.best_val_accuracy:.4f} | final val loss {result.final_val_loss:.4f} | "
        f"epochs {result.epochs} | train seconds {result.train_seconds:.2f}"
        + (f" | alpha {result.extras['alpha']:.4f}" if "alpha" in result.extras else "")
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        handler = {"run": cmd_run}.get(args.command) or args.handler
        return int(handler(args))
    except UserError as exc:
        print(f"lrpo_study: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lrpo_study: interrupted", file=sys.stderr)
        return 130
