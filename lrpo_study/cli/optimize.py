"""``optimize``: run study files into one storage (running one again resumes it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lrpo_study.errors import UserError
from lrpo_study.names import SAMPLERS

from ._common import (
    add_cache_args,
    add_data_args,
    add_storage_arg,
    artifact_folder,
    beside,
    cache_settings,
    seed,
)

DEFAULT_STUDY = Path(__file__).with_name("default_study.toml")


def register(sub: Any) -> None:
    opt = sub.add_parser(
        "optimize", help="run Optuna studies from study files into one storage",
        description="Run each study file in turn into one storage. Running a study again resumes it.",
    )
    opt.add_argument("studies", nargs="*", metavar="STUDY.toml", help=f"study files (default: the small built-in study {DEFAULT_STUDY.name})")
    add_storage_arg(opt)
    opt.add_argument("--n-trials", type=int, help="total finished trials wanted per study (a resumed study runs only what is missing); default: the file's n_trials")
    opt.add_argument("--workers", type=int, default=1, help="worker processes on the storage (needs journal: or postgresql)")
    opt.add_argument("--sampler", choices=SAMPLERS, help="override the file's sampler")
    opt.add_argument("--seed", type=seed, help="override the file's sampler seed")
    opt.add_argument("--heartbeat", type=int, default=20, metavar="SECONDS", help="RDB heartbeat interval; a trial silent for 3x this is failed and retried (default %(default)s)")
    opt.add_argument("--storage-timeout", type=float, default=120.0, metavar="SECONDS",
                     help="how long to wait for a database server that stopped answering before giving up (default %(default)s)")
    opt.add_argument("--checkpoint-dir", help="per-epoch checkpoints so retried trials resume (default: beside a sqlite/journal file; off for servers)")
    add_cache_args(opt)
    opt.add_argument("--artifact-dir", help="each trial's figure for the dashboard (default: beside a sqlite/journal file; "
                                            "for a database server ./lrpo_study.artifacts: give workers on several machines a shared folder)")
    opt.add_argument("--max-failures", type=int, default=3, metavar="N",
                     help="stop after N trials failed on their own (an exception in the loop, a timeout); 0: never (default %(default)s)")
    opt.add_argument("--trial-timeout", type=float, metavar="SECONDS", help="fail a trial that runs longer (default: no limit)")
    opt.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_data_args(opt)
    opt.add_argument("--devices", metavar="LIST", help="the GPUs workers use, e.g. 0,1 or cuda:0,cuda:1 (default: every GPU torch sees); worker i trains on the i-th mod their number")
    opt.add_argument("--trials-per-gpu", type=int, default=1, metavar="N", help="how many workers may share one GPU, for small models (default %(default)s)")
    opt.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from lrpo_study.study.runner import RunOptions, quiet_optuna_logs, run_all
    from lrpo_study.study.spec import load_spec

    if args.n_trials is not None and not 1 <= args.n_trials <= 1_000_000:  # spec.MAX_TRIALS, without importing torch
        raise UserError(f"--n-trials must be in [1, 1_000_000], got {args.n_trials}")
    if args.heartbeat < 1:
        raise UserError(f"--heartbeat must be >= 1 second, got {args.heartbeat}")
    if not args.storage_timeout > 0:
        raise UserError(f"--storage-timeout must be > 0 seconds, got {args.storage_timeout}")
    if args.max_failures < 0:
        raise UserError(f"--max-failures must be >= 0, got {args.max_failures}")
    if args.trial_timeout is not None and not 0 < args.trial_timeout < 10**7:
        raise UserError(f"--trial-timeout must be in (0, 1e7) seconds, got {args.trial_timeout}")
    cache_dir, cache_max_bytes = cache_settings(args)
    if not 1 <= args.workers <= 1024:
        raise UserError(f"--workers must be in [1, 1024], got {args.workers}")
    specs = [load_spec(path) for path in (args.studies or [DEFAULT_STUDY])]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UserError(f"two study files name the same study: {sorted(n for n in names if names.count(n) > 1)[0]!r}")
    from lrpo_study.tasks.data import resolve_root
    from lrpo_study.training.devices import parse_devices, worker_devices
    from lrpo_study.training.loop import resolve_device

    resolve_root(args.data_dir)
    resolve_device(args.device)
    import torch

    devices = worker_devices(
        device=args.device, devices=None if args.devices is None else parse_devices(args.devices), workers=args.workers,
        trials_per_gpu=args.trials_per_gpu, visible=torch.cuda.device_count(),
    )
    options = RunOptions(
        storage=args.storage, heartbeat=args.heartbeat, storage_timeout=args.storage_timeout, n_trials=args.n_trials,
        workers=args.workers, sampler=args.sampler,
        seed=args.seed, device=args.device, worker_devices=tuple(devices), data_dir=args.data_dir, progress=not args.no_progress,
        checkpoint_dir=args.checkpoint_dir or beside(args.storage, ".checkpoints"),
        cache_dir=cache_dir, cache_max_bytes=cache_max_bytes,
        artifact_dir=artifact_folder(args.storage, args.artifact_dir),
        max_failures=args.max_failures, trial_timeout=args.trial_timeout,
    )

    quiet_optuna_logs()
    try:
        run_all(specs, options)
    except KeyboardInterrupt:
        command = " ".join(["python -m lrpo_study", *map(_quote, sys.argv[1:])]) if sys.argv[1:] else "the same command"
        print(f"lrpo_study: interrupted; the running trial is marked FAIL. To resume, run: {command}", file=sys.stderr)
        return 130
    return 0


def _quote(arg: str) -> str:
    import shlex

    from lrpo_study.study.storage import mask_url

    return shlex.quote(mask_url(arg))
