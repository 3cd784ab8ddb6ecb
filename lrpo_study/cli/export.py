"""``export``: a trial's settings as JSON for ``load_schedule`` (or the HF Trainer's keyword arguments)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import add_storage_arg, load_study


def register(sub: Any) -> None:
    exp = sub.add_parser("export", help="write a trial's settings as JSON for load_schedule()")
    add_storage_arg(exp)
    exp.add_argument("--study", required=True)
    pick = exp.add_mutually_exclusive_group()
    pick.add_argument("--trial", type=int, help="trial number")
    pick.add_argument("--pareto", action="store_true", help="all Pareto trials")
    pick.add_argument("--best", metavar="OBJECTIVE", help="the Pareto trial best at this: one of the study's objectives "
                      "(best_val_accuracy, train_flops, final_val_f1, ...) or accuracy, loss, seconds, flops")
    exp.add_argument("-o", "--output", default="settings.json")
    exp.add_argument("--for", dest="target", choices=("lrpo_study", "transformers"), default="lrpo_study",
                     help="lrpo_study: settings for load_schedule (default); transformers: TrainingArguments keyword arguments")
    exp.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from lrpo_study.integrations.export import export

    study = load_study(args.storage, args.study)
    n = export(study, args.storage, Path(args.output), trial=args.trial, pareto=args.pareto, best=args.best, target=args.target)
    what = "TrainingArguments keyword arguments" if args.target == "transformers" else f"setting{'s' if n != 1 else ''}"
    print(f"wrote {what} of study {args.study!r} to {args.output}")
    return 0
