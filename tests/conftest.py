from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

# pytest-xdist runs N test processes on the machine's cores: each of them, and every process it starts,
# trains with one thread; with torch's default (a thread per core) in each, N x cores threads spin over
# the cores (measured on 2 cores: test_cache's branching tests take 97 s that way, 12.7 s this way).
# Set before torch is imported, so child processes inherit it too.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ["OMP_NUM_THREADS"] = "1"

import torch  # noqa: E402  (after the thread count above)

from lrpo_study.tasks import Task, load_task  # noqa: E402

if os.environ.get("OMP_NUM_THREADS") == "1":
    torch.set_num_threads(1)  # in case a plugin imported torch before this file
from lrpo_study.tasks.data import Split, load_split

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("LRPO_DATA_DIR") or REPO.parent / "shared" / "data")
# CLI subprocesses inherit this: tests never download.
os.environ["LRPO_DATA_DIR"] = str(DATA_DIR)
# Figures of studies on PostgreSQL go here, not into the checkout (the default is ./lrpo_study.artifacts).
os.environ.setdefault("LRPO_ARTIFACT_DIR", tempfile.mkdtemp(prefix="lrpo-artifacts-"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "FashionMNIST" / "raw").is_dir():
        pytest.fail(f"Fashion-MNIST not found under {DATA_DIR}; set LRPO_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def small_split(data_dir: Path) -> Split:
    """A small real subset: 2,048 training and 512 validation images of the holdout split."""
    return load_split(split="holdout", data_dir=data_dir, seed=0, train_size=2048, val_size=512)


@pytest.fixture(scope="session")
def small_task(data_dir: Path) -> Task:
    """The built-in fashion-mnist task on the same small real subset as ``small_split``."""
    return load_task("fashion-mnist", {"train_size": 2048, "val_size": 512}, data_dir=data_dir, seed=0)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``lrpo_study.cli.main(args)`` in this process, its output captured (Optuna's log included), with
    ``env`` set meanwhile: for tests of what the CLI says and does, where the process is not what is
    tested (signals, workers, kills and the README's commands use ``run_cli``). An uncaught exception is
    returned as exit status 1 with its traceback, as the interpreter would."""
    import logging
    import traceback

    from lrpo_study.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {key: os.environ.get(key) for key in env or {}}
    handlers = [h for name in ("optuna", "") for h in logging.getLogger(name).handlers if isinstance(h, logging.StreamHandler)]
    streams = [h.stream for h in handlers]
    try:
        os.environ.update(env or {})
        for handler in handlers:
            handler.setStream(err)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(list(args))
            except Exception:  # noqa: BLE001
                traceback.print_exc()
                status = 1
    finally:
        for handler, stream in zip(handlers, streams, strict=True):
            handler.setStream(stream)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return subprocess.CompletedProcess(["lrpo_study", *args], status, out.getvalue(), err.getvalue())


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m lrpo_study ARGS`` as a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "lrpo_study", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=REPO, stdin=subprocess.DEVNULL,
    )


def stderr_lines(text: str) -> list[str]:
    """What a command said on stderr, less its warnings (``optimize`` warns, for one, when every trial of a
    study costs the same): the lines an error or an interrupt must keep to one."""
    return [line for line in text.strip().splitlines() if not line.startswith("warning: ")]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    lines = stderr_lines(proc.stderr)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


PG_URL = os.environ.get("LRPO_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The real PostgreSQL server. Unreachable is a failure, never a skip."""
    import psycopg

    try:
        psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=5).close()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL at {PG_URL} is unreachable ({exc}); start it or set LRPO_PG_URL")
    return PG_URL


def write_study(
    path: Path, *, name: str, method: str = "fixed", n_trials: int = 4, objectives: str = '["best_val_accuracy", "train_seconds"]',
    pruning: str = 'rule = "none"', fixed: str = "epochs = 3\nbatch_size = 128", search: str = 'lr = { type = "float", low = 0.01, high = 0.2, log = true }',
    sampler: str = "tpe", extra: str = "",
) -> Path:
    """A small real study: 1,024 training / 256 validation images, a few epochs per trial."""
    path.write_text(
        f'[study]\nname = "{name}"\nmethod = "{method}"\nobjectives = {objectives}\nsampler = "{sampler}"\n'
        f"n_trials = {n_trials}\ntrain_size = 1024\nval_size = 256\n{extra}\n"
        f"[pruning]\n{pruning}\n\n[fixed]\n{fixed}\n\n[search]\n{search}\n"
    )
    return path


def write_task_study(
    path: Path, *, name: str, task: str = "tests.user_task:classification", n_trials: int = 3,
    objectives: str = '["best_val_accuracy", "train_seconds"]', epochs: int = 2,
) -> Path:
    """A fixed-lr study on one of ``tests.user_task``'s workloads: seconds per trial, no Fashion-MNIST."""
    path.write_text(
        f'[study]\nname = "{name}"\nmethod = "fixed"\nobjectives = {objectives}\nn_trials = {n_trials}\n'
        f'[task]\nname = "{task}"\n[pruning]\nrule = "none"\n[fixed]\nepochs = {epochs}\nbatch_size = 64\n'
        '[search]\nlr = { type = "float", low = 0.01, high = 0.2, log = true }\n'
    )
    return path


def write_loop_study(
    path: Path, *, name: str, loop: str, objectives: str, method: str = "fixed", n_trials: int = 2,
    pruning: str = 'rule = "none"', fixed: str = "", search: str = 'lr = { type = "float", low = 0.01, high = 0.1 }',
) -> Path:
    """A study whose trials ``tests.user_loops``' function ``loop`` trains (``objectives`` as TOML)."""
    path.write_text(
        f'[study]\nname = "{name}"\nmethod = "{method}"\nobjectives = {objectives}\nn_trials = {n_trials}\n'
        f'[task]\nloop = "tests.user_loops:{loop}"\n[pruning]\n{pruning}\n[fixed]\n{fixed}\n[search]\n{search}\n'
    )
    return path


def wait_until(predicate: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1,
               alive: subprocess.Popen[str] | None = None) -> T:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds pass (the test
    fails naming ``what``). An exception from it counts as "not yet" (a study not created yet, a server not
    listening yet). With ``alive``, a process that exits meanwhile fails the test at once, with its stderr."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"{what}: the process exited first ({alive.returncode}): {alive.stderr.read() if alive.stderr else ''}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


@contextlib.contextmanager
def dashboard_server(storage_url: str, *, cwd: Path = REPO, env: dict[str, str] | None = None) -> Iterator[str]:
    """``python -m lrpo_study dashboard`` on a free port, as a real subprocess; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrpo_study", "dashboard", "--storage", storage_url, "--port", str(port)],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: urllib.request.urlopen(f"{base}/api/meta", timeout=2), timeout=60, what="the dashboard answers",
                   interval=0.5, alive=proc)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def chromium() -> Any:
    """Debian's headless Chromium through selenium (the flags the environment asks for)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--window-size=1400,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
