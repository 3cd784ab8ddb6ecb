"""lrpo_study: Optuna studies of learning-rate schedules on real training runs.

Train once (run), search (optimize), re-train chosen trials on the untouched test data (confirm),
compare the studies (report), take a tuned schedule home (export), browse them (dashboard)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import interrupts
from .errors import UserError, exception_chain
from .names import METHODS, SAMPLERS

DEFAULT_STORAGE = "sqlite:///lrpo_study.db"  # runner.DEFAULT_STORAGE; not imported here, to keep start-up fast
DEFAULT_STUDY = Path(__file__).with_name("default_study.toml")


class _Parser(argparse.ArgumentParser):
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


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder holding FashionMNIST/raw (default: $LRPO_DATA_DIR, else download)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto picks CUDA when present")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lrpo_study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="train once with one schedule and print the curves")
    run.add_argument("--method", choices=METHODS, help="the schedule (or take it from --settings)")
    run.add_argument("--settings", metavar="SETTINGS.json", help="re-run exported settings (method + every hyperparameter)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any hyperparameter (repeatable)")
    run.add_argument("--task", default="fashion-mnist", help="a built-in task or package.module:factory (default %(default)s)")
    run.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE", help="a task option (repeatable)")
    run.add_argument("--epochs", type=int, help="epochs (default 16; for lrpo split like the paper's 10+1+5)")
    run.add_argument("--seed", type=_seed, default=42)
    run.add_argument("--index", type=int, help="which trial of a --pareto settings file (0-based)")
    for flag, kind, default, choices in (
        ("--model", str, "mlp", ("mlp", "cnn")), ("--split", str, "holdout", ("paper", "holdout")),
        ("--train-size", int, 20000, None), ("--val-size", int, 4000, None),
    ):
        run.add_argument(flag, type=kind, choices=choices,
                         help=f"fashion-mnist option (default {default}); same as --task-option {flag[2:].replace('-', '_')}=...")
    run.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    run.add_argument("--test", action="store_true", help="also score the final model on the task's test data (never done in studies)")
    _add_data_args(run)

    opt = sub.add_parser(
        "optimize", help="run Optuna studies from study files into one storage",
        description="Run each study file in turn into one storage. Running a study again resumes it.",
    )
    opt.add_argument("studies", nargs="*", metavar="STUDY.toml", help=f"study files (default: the small built-in study {DEFAULT_STUDY.name})")
    opt.add_argument("--storage", default=DEFAULT_STORAGE, help="sqlite:///PATH (default %(default)s), journal:PATH or postgresql+psycopg://...")
    opt.add_argument("--n-trials", type=int, help="total finished trials wanted per study (a resumed study runs only what is missing); default: the file's n_trials")
    opt.add_argument("--workers", type=int, default=1, help="worker processes on the storage (needs journal: or postgresql)")
    opt.add_argument("--sampler", choices=SAMPLERS, help="override the file's sampler")
    opt.add_argument("--seed", type=_seed, help="override the file's sampler seed")
    opt.add_argument("--heartbeat", type=int, default=20, metavar="SECONDS", help="RDB heartbeat interval; a trial silent for 3x this is failed and retried (default %(default)s)")
    opt.add_argument("--storage-timeout", type=float, default=120.0, metavar="SECONDS",
                     help="how long to wait for a database server that stopped answering before giving up (default %(default)s)")
    opt.add_argument("--checkpoint-dir", help="per-epoch checkpoints so retried trials resume (default: beside a sqlite/journal file; off for servers)")
    opt.add_argument("--cache-dir", help="trajectory cache: shared epoch prefixes are trained once (default: beside a sqlite/journal file; off for servers)")
    opt.add_argument("--no-cache", action="store_true", help="train every epoch of every trial")
    opt.add_argument("--cache-size-mb", type=int, default=2048, help="cache size limit; least recently used entries go first (default %(default)s)")
    opt.add_argument("--artifact-dir", help="each trial's figure for the dashboard (default: beside a sqlite/journal file; off for servers unless given — use a shared folder)")
    opt.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_data_args(opt)
    opt.add_argument("--devices", metavar="LIST", help="the GPUs workers use, e.g. 0,1 or cuda:0,cuda:1 (default: every GPU torch sees); worker i trains on the i-th mod their number")
    opt.add_argument("--trials-per-gpu", type=int, default=1, metavar="N", help="how many workers may share one GPU, for small models (default %(default)s)")
    opt.set_defaults(handler=cmd_optimize)

    exp = sub.add_parser("export", help="write a trial's settings as JSON for load_schedule()")
    exp.add_argument("--storage", default=DEFAULT_STORAGE)
    exp.add_argument("--study", required=True)
    pick = exp.add_mutually_exclusive_group()
    pick.add_argument("--trial", type=int, help="trial number")
    pick.add_argument("--pareto", action="store_true", help="all Pareto trials")
    pick.add_argument("--best", choices=("accuracy", "loss", "seconds"), help="the Pareto trial best at this")
    exp.add_argument("-o", "--output", default="settings.json")
    exp.add_argument("--for", dest="target", choices=("lrpo_study", "transformers"), default="lrpo_study",
                     help="lrpo_study: settings for load_schedule (default); transformers: TrainingArguments keyword arguments")
    exp.set_defaults(handler=cmd_export)

    rep = sub.add_parser("report", help="one HTML page comparing every method's study in a storage")
    rep.add_argument("--storage", default=DEFAULT_STORAGE)
    rep.add_argument("-o", "--output", default="report.html")
    rep.add_argument("--no-dashboard", action="store_true", help="do not save the figure and notes into the studies")
    rep.set_defaults(handler=cmd_report)

    con = sub.add_parser("confirm", help="re-train Pareto trials with fresh seeds; score on the untouched test set")
    con.add_argument("--storage", default=DEFAULT_STORAGE)
    con.add_argument("--study", action="append", default=[], help="study name (repeatable; default: every lrpo_study study)")
    con.add_argument("--seeds", default="42,43,44", help="comma-separated seeds (default %(default)s)")
    con.add_argument("--best", type=int, metavar="N", help="the N best trials on the first objective instead of the Pareto trials")
    con.add_argument("--trial", type=int, action="append", default=[], metavar="N",
                     help="exactly this trial (repeatable; needs one --study)")
    _add_data_args(con)
    con.set_defaults(handler=cmd_confirm)

    dash = sub.add_parser("dashboard", help="browse the storage in optuna-dashboard")
    dash.add_argument("--storage", default=DEFAULT_STORAGE)
    dash.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    dash.add_argument("--port", type=int, default=8080)
    dash.add_argument("--artifact-dir", help="the trials' figures (default: beside a sqlite/journal file, as optimize writes them)")
    dash.set_defaults(handler=cmd_dashboard)
    return parser


def _load_study(storage_url: str, name: str) -> Any:
    import optuna

    from .storage import open_storage

    storage = open_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise UserError(f"no study {name!r} in the storage; it has: {', '.join(names) or 'none'}") from None


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    study = _load_study(args.storage, args.study)
    n = export(study, args.storage, Path(args.output), trial=args.trial, pareto=args.pareto, best=args.best, target=args.target)
    what = "TrainingArguments keyword arguments" if args.target == "transformers" else f"setting{'s' if n != 1 else ''}"
    print(f"wrote {what} of study {args.study!r} to {args.output}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import collect, save_to_dashboard, write_report
    from .storage import mask_url, open_storage

    methods = collect(open_storage(args.storage))
    if not methods:
        raise UserError(f"no lrpo_study study with complete trials in {mask_url(args.storage)}")
    figures = write_report(methods, Path(args.output))
    if not args.no_dashboard:
        save_to_dashboard(methods, figures)
    print(f"wrote {args.output}: {len(methods)} studies ({', '.join(m.study.study_name for m in methods)})")
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    import optuna

    from . import record
    from .confirm import confirm_study, confirmation_table
    from .data import resolve_root
    from .storage import mask_url, open_storage
    from .train import resolve_device

    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise UserError(f"--seeds takes comma-separated integers, got {args.seeds!r}") from None
    if args.best is not None and args.best < 1:
        raise UserError(f"--best must be >= 1, got {args.best}")
    if args.trial and (len(args.study) != 1 or args.best is not None):
        raise UserError(f"--trial needs exactly one --study and no --best, got --study {args.study} --best {args.best}")
    resolve_root(args.data_dir)
    resolve_device(args.device)
    storage = open_storage(args.storage)
    names = args.study or optuna.get_all_study_names(storage)
    studies = [_load_study(args.storage, name) for name in names]
    studies = [s for s in studies if record.SPEC in s.user_attrs and s.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    if not studies:
        raise UserError(f"no lrpo_study study with complete trials in {mask_url(args.storage)}")
    results = []
    for study in studies:
        task, options = record.stored_task(study.user_attrs[record.SPEC])
        if not args.study and task == "fashion-mnist" and options.get("split") == "paper":
            print(f"{study.study_name}: skipped (split 'paper' has no untouched test set)")
            continue
        results += confirm_study(study, seeds=seeds, top=args.best, device_name=args.device, data_dir=args.data_dir,
                                 numbers=args.trial)
    print(confirmation_table(results))
    return 0


def _check_bind(host: str, port: int) -> None:
    """Refuse an address the server could not bind, before saying it runs there."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"--host {host!r} does not resolve: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise UserError(f"cannot serve on {host}:{port}: {exc.strerror} (try another --port)") from None


def cmd_dashboard(args: argparse.Namespace) -> int:
    import ipaddress

    from optuna_dashboard import run_server

    from .storage import mask_url, open_storage

    if not 0 < args.port < 65536:
        raise UserError(f"--port must be in 1..65535, got {args.port}")
    _check_bind(args.host, args.port)
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(
            f"lrpo_study: warning: optuna-dashboard has no authentication; anyone who can reach "
            f"{args.host}:{args.port} can read and change every study in this storage", file=sys.stderr,
        )
    storage = open_storage(args.storage)
    artifact_dir = args.artifact_dir or _beside(args.storage, ".artifacts")
    store = None
    if artifact_dir is not None:
        from optuna.artifacts import FileSystemArtifactStore

        Path(artifact_dir).mkdir(parents=True, exist_ok=True)
        store = FileSystemArtifactStore(artifact_dir)
    print(f"optuna-dashboard for {mask_url(args.storage)} on http://{args.host}:{args.port}/", flush=True)
    run_server(storage, host=args.host, port=args.port, artifact_store=store)
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    from .config import load_spec
    from .runner import RunOptions, quiet_optuna_logs, run_all

    if args.n_trials is not None and args.n_trials < 1:
        raise UserError(f"--n-trials must be >= 1, got {args.n_trials}")
    if args.heartbeat < 1:
        raise UserError(f"--heartbeat must be >= 1 second, got {args.heartbeat}")
    if not args.storage_timeout > 0:
        raise UserError(f"--storage-timeout must be > 0 seconds, got {args.storage_timeout}")
    if args.cache_size_mb < 1:
        raise UserError(f"--cache-size-mb must be >= 1, got {args.cache_size_mb}")
    if args.no_cache and args.cache_dir:
        raise UserError("give --cache-dir or --no-cache, not both")
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    specs = [load_spec(path) for path in (args.studies or [DEFAULT_STUDY])]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UserError(f"two study files name the same study: {sorted(n for n in names if names.count(n) > 1)[0]!r}")
    from .data import resolve_root
    from .devices import parse_devices, worker_devices
    from .train import resolve_device

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
        checkpoint_dir=args.checkpoint_dir or _beside(args.storage, ".checkpoints"),
        cache_dir=None if args.no_cache else args.cache_dir or _beside(args.storage, ".cache"),
        cache_max_bytes=args.cache_size_mb * 1024**2,
        artifact_dir=args.artifact_dir or _beside(args.storage, ".artifacts"),
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

    from .storage import mask_url

    return shlex.quote(mask_url(arg))


def _beside(storage: str, suffix: str) -> str | None:
    from .checkpoints import beside_storage

    path = beside_storage(storage, suffix)
    return None if path is None else str(path)


def _seed(text: str) -> int:
    """A seed every library takes (numpy's and Optuna's samplers need [0, 2**32))."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32), got {value}")
    return value


def _run_method_and_values(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    overrides = parse_set(args.set)
    if args.settings is None:
        if args.method is None:
            raise UserError("run needs --method or --settings")
        return args.method, overrides
    if args.method is not None:
        raise UserError("give --method or --settings, not both (the settings file names its method)")
    from .settings import load_settings

    try:
        settings = load_settings(args.settings, index=args.index)
    except ValueError as exc:
        raise UserError(f"{args.settings}: {exc}") from None
    values = dict(settings["hyperparameters"])
    if args.epochs is not None or "epochs" in overrides:
        values.pop("epochs")
        if settings["method"] == "lrpo":  # a new epoch count re-splits the phases unless they are set
            for phase in ("pretrain_epochs", "finetune_epochs"):
                if phase not in overrides:
                    values.pop(phase)
    return settings["method"], {**values, **overrides}


def _run_task_options(args: argparse.Namespace) -> dict[str, Any]:
    options = parse_set(args.task_option, flag="--task-option")
    for flag in ("model", "split", "train_size", "val_size"):
        value = getattr(args, flag)
        if value is None:
            continue
        if args.task != "fashion-mnist":
            raise UserError(f"--{flag.replace('_', '-')} is a fashion-mnist option; for task {args.task!r} use --task-option KEY=VALUE")
        if flag in options:
            raise UserError(f"give {flag} once: --{flag.replace('_', '-')} or --task-option {flag}=...")
        options[flag] = value
    return options


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .hyperparameters import resolve, with_defaults
    from .tasks import load_task
    from .train import Diverged, EpochMetrics, resolve_device, train

    method, values = _run_method_and_values(args)
    if args.epochs is not None:
        if "epochs" in values:
            raise UserError("give epochs once: --epochs or --set epochs=N")
        values["epochs"] = args.epochs
    device = resolve_device(args.device)
    task = load_task(args.task, _run_task_options(args), data_dir=args.data_dir, seed=args.seed).to(device)
    try:  # the task's recipe, under what was given
        hp = resolve(method, with_defaults(method, values, task.defaults))
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if args.test and task.test is None:
        raise UserError(f"--test: task {args.task!r} with these options has no test data (the paper split has none)")

    def table_row(m: EpochMetrics) -> None:
        if m.epoch == 1:
            tqdm.write(f"{'epoch':>5} {'train_loss':>10} {'val_loss':>9} {'val_acc':>8} {'lr':>9} {'seconds':>8}")
        accuracy = "-" if m.val_accuracy is None else f"{m.val_accuracy:.4f}"
        tqdm.write(f"{m.epoch:>5} {m.train_loss:>10.4f} {m.val_loss:>9.4f} {accuracy:>8} {m.lr:>9.5f} {m.seconds:>8.3f}")

    try:
        result = train(
            task=task, method=method, hyperparameters=hp, seed=args.seed, device=device,
            on_epoch=() if args.json else (table_row,), progress=sys.stderr.isatty(),  # no bar in logs
            score_test=args.test,
        )
    except Diverged as exc:
        raise UserError(f"{method} {exc} (lr={hp['lr']:g}: try a lower lr)") from None
    if args.json:
        print(json.dumps(result.summary()))
        return 0
    accuracy = f"best val accuracy {result.best_val_accuracy:.4f} | " if task.has_accuracy else ""
    print(
        f"{accuracy}final val loss {result.final_val_loss:.4f} | "
        f"epochs {result.epochs} | train seconds {result.train_seconds:.2f}"
        + (f" | alpha {result.extras['alpha']:.4f}" if "alpha" in result.extras else "")
        + "".join(f" | {name.replace('_', ' ')} {result.extras[name]:.4f}" for name in ("test_loss", "test_accuracy")
                  if name in result.extras)
    )
    return 0


def entry() -> NoReturn:
    """The ``lrpo-study`` console script: ``python -m lrpo_study``."""
    interrupts.install()
    sys.exit(main())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (2: bad input, 130: interrupted)."""
    try:
        args = build_parser().parse_args(argv)
        handler = {"run": cmd_run}.get(args.command) or args.handler
        status = int(handler(args))
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

    from .storage import mask_text, mask_url

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
