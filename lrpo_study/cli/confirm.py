"""``confirm``: re-train a study's Pareto (or chosen) trials with fresh seeds and score them on the test data."""

from __future__ import annotations

import argparse
from typing import Any

from lrpo_study.errors import UserError

from ._common import add_cache_args, add_data_args, add_storage_arg, cache_settings, load_study


def register(sub: Any) -> None:
    con = sub.add_parser("confirm", help="re-train Pareto trials with fresh seeds; score on the untouched test set")
    add_storage_arg(con)
    con.add_argument("--study", action="append", default=[], help="study name (repeatable; default: every lrpo_study study)")
    con.add_argument("--seeds", default="101,102,103",
                     help="comma-separated seeds, none of them a study's training seed (default %(default)s)")
    con.add_argument("--best", type=int, metavar="N", help="the N best trials on the first objective instead of the Pareto trials")
    con.add_argument("--trial", type=int, action="append", default=[], metavar="N",
                     help="exactly this trial (repeatable; needs one --study)")
    con.add_argument("--task", action="append", default=[], metavar="PACKAGE.MODULE:FUNCTION",
                     help="your task factory or loop, for a study trained by one: it must be the one the storage names "
                          "(confirm never imports code named only by a storage; repeatable)")
    add_data_args(con)
    add_cache_args(con)  # the same folder as optimize's: runs of one seed share their trunks (wsd, pbt lineages)
    con.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import optuna

    from lrpo_study.study.confirm import check_confirmable, confirm_study, confirmation_table
    from lrpo_study.study.storage import mask_url, open_storage
    from lrpo_study.tasks.data import resolve_root
    from lrpo_study.training.cache import TrajectoryCache, served_line
    from lrpo_study.training.loop import resolve_device
    from lrpo_study.views import record

    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise UserError(f"--seeds takes comma-separated integers, got {args.seeds!r}") from None
    if args.best is not None and args.best < 1:
        raise UserError(f"--best must be >= 1, got {args.best}")
    if args.trial and (len(args.study) != 1 or args.best is not None):
        raise UserError(f"--trial needs exactly one --study and no --best, got --study {args.study} --best {args.best}")
    cache_dir, cache_max_bytes = cache_settings(args)
    resolve_root(args.data_dir)
    resolve_device(args.device)
    cache = None if cache_dir is None else TrajectoryCache(cache_dir, max_bytes=cache_max_bytes)
    storage = open_storage(args.storage, existing=True)
    names = args.study or optuna.get_all_study_names(storage)
    studies = [load_study(args.storage, name) for name in names]
    studies = [s for s in studies if record.SPEC in s.user_attrs and s.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    if not studies:
        raise UserError(f"no lrpo_study study with complete trials in {mask_url(args.storage)}")
    chosen = []
    for study in studies:
        task, options = record.stored_task(study.user_attrs[record.SPEC])
        if not args.study and task == "fashion-mnist" and options.get("split") == "paper":
            print(f"{study.study_name}: skipped (split 'paper' has no untouched test set)")
            continue
        check_confirmable(study, seeds=seeds, trusted=args.task)  # every study's, before any trains or imports
        chosen.append(study)
    results = []
    for study in chosen:
        results += confirm_study(study, seeds=seeds, top=args.best, device_name=args.device, data_dir=args.data_dir,
                                 numbers=args.trial, cache=cache, trusted=args.task)
    print(confirmation_table(results))
    if cache is not None:
        epochs = sum(r.result.epochs * len(r.result.seeds) for r in results)
        cached = sum(r.cached_epochs for r in results)
        print(served_line("confirm", cached=cached, epochs=epochs))
    return 0
