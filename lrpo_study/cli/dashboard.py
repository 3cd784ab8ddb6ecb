"""``dashboard``: optuna-dashboard on a storage, with the trials' figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lrpo_study.errors import UserError

from ._common import add_storage_arg, artifact_folder


def register(sub: Any) -> None:
    dash = sub.add_parser("dashboard", help="browse the storage in optuna-dashboard")
    add_storage_arg(dash)
    dash.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    dash.add_argument("--port", type=int, default=8080)
    dash.add_argument("--artifact-dir", help="the trials' figures (default: where optimize writes them: beside a sqlite/journal "
                                             "file, ./lrpo_study.artifacts for a database server)")
    dash.set_defaults(handler=handle)


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


def handle(args: argparse.Namespace) -> int:
    import ipaddress

    from optuna_dashboard import run_server

    from lrpo_study.study.storage import mask_url, open_storage

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
    storage = open_storage(args.storage, existing=True)
    from optuna.artifacts import FileSystemArtifactStore

    artifact_dir = artifact_folder(args.storage, args.artifact_dir)
    Path(artifact_dir).mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(artifact_dir)
    print(f"optuna-dashboard for {mask_url(args.storage)} on http://{args.host}:{args.port}/", flush=True)
    run_server(storage, host=args.host, port=args.port, artifact_store=store)
    return 0
