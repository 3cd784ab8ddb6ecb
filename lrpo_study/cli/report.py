"""``report``: one HTML page comparing every method's study in a storage, its figures saved into the studies."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lrpo_study.errors import UserError

from ._common import add_storage_arg


def register(sub: Any) -> None:
    rep = sub.add_parser("report", help="one HTML page comparing every method's study in a storage")
    add_storage_arg(rep)
    rep.add_argument("-o", "--output", default="report.html")
    rep.add_argument("--no-dashboard", action="store_true", help="do not save the figure and notes into the studies")
    rep.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from lrpo_study.study.storage import mask_url, open_storage
    from lrpo_study.views.report import collect, save_to_dashboard, write_report

    methods = collect(open_storage(args.storage, existing=True))
    if not methods:
        raise UserError(f"no lrpo_study study with complete trials in {mask_url(args.storage)}")
    figures = write_report(methods, Path(args.output))
    if not args.no_dashboard:
        save_to_dashboard(methods, figures)
    print(f"wrote {args.output}: {len(methods)} studies ({', '.join(m.study.study_name for m in methods)})")
    return 0
