"""Faults injected for real: a disk that fills up (the kernel's file-size limit, RLIMIT_FSIZE, makes
every write past N bytes fail with EFBIG, for any user), a SQLite file damaged mid-file."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from .conftest import (
    REPO,
    assert_one_line_error,
    cli,
    free_port,
    run_cli,
    stderr_lines,
    wait_until,
    write_study,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def run_on_full_disk(max_bytes: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m lrpo_study ARGS`` in a process that cannot write any file past ``max_bytes``."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return subprocess.run(
        [sys.executable, "-m", "lrpo_study", *args], capture_output=True, text=True, timeout=300, cwd=REPO,
        env=dict(os.environ), stdin=subprocess.DEVNULL, preexec_fn=limit,
    )


def test_a_journal_torn_by_a_full_disk_is_repaired_and_the_study_survives(tmp_path: Path) -> None:
    spec = write_study(tmp_path / "s.toml", name="torn", n_trials=6, fixed="epochs = 2\nbatch_size = 256")
    journal = tmp_path / "j.log"
    url = f"journal:{journal}"
    # Past the second trial's start: torn within its record (with 0.6.0's longer records, 12,000 bytes tore the
    # journal before the third trial's host and pid, which no process can then tell from a live one).
    full = run_on_full_disk(16_000, "optimize", str(spec), "--storage", url, "--no-progress", "--no-cache")
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    assert "storage" in stderr_lines(full.stderr)[-1] and "full disk" in full.stderr
    assert not journal.read_bytes().endswith(b"\n"), "the fault must have torn the journal's last line"
    finished_before = len(optuna.load_study(study_name="torn", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal)))).get_trials(states=FINISHED))

    again = cli("optimize", str(spec), "--storage", url, "--no-progress", "--no-cache")
    assert again.returncode == 0, again.stderr
    assert "partial record" in again.stderr and (tmp_path / "j.log.torn-1").exists()
    study = optuna.load_study(study_name="torn", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
    assert finished_before >= 1 and len(study.get_trials(states=FINISHED)) == 6  # nothing lost, target reached
    assert cli("export", "--storage", url, "--study", "torn", "--best", "accuracy", "-o", str(tmp_path / "x.json")).returncode == 0


def test_a_full_cache_and_checkpoint_folder_costs_a_warning_not_the_run(tmp_path: Path) -> None:
    # The trials' checkpoints and cache entries (~2 MB each) cannot be written; the SQLite file can.
    spec = write_study(tmp_path / "s.toml", name="full", n_trials=3, fixed="epochs = 3\nbatch_size = 256")
    url = f"sqlite:///{tmp_path / 's.db'}"
    proc = run_on_full_disk(1_000_000, "optimize", str(spec), "--storage", url, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "cannot write" in line]
    assert 1 <= len(warnings) <= 2 and all("going on without them" in w for w in warnings), proc.stderr  # once per store
    assert len(optuna.load_study(study_name="full", storage=url).get_trials(states=(TrialState.COMPLETE,))) == 3
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_sqlite_file_damaged_mid_file_is_one_line_everywhere(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    study = optuna.create_study(study_name="damaged", storage=url, directions=["maximize", "minimize"])
    for i in range(200):
        study.add_trial(optuna.trial.create_trial(values=[i / 200, i], params={"lr": 0.01 + i / 1e4},
                                                  distributions={"lr": optuna.distributions.FloatDistribution(0.0, 1.0)},
                                                  user_attrs={"curves": {"val_loss": [1.0] * 50}}))
    data = bytearray(db.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 20_000] = os.urandom(20_000)
    db.write_bytes(bytes(data))
    spec = write_study(tmp_path / "s.toml", name="damaged", n_trials=3)
    for args, needles in (
        (["export", "--storage", url, "--study", "damaged", "--pareto", "-o", str(tmp_path / "x.json")], ["storage", "malformed"]),
        (["report", "--storage", url, "-o", str(tmp_path / "r.html")], ["storage", "malformed"]),
        (["confirm", "--storage", url, "--study", "damaged"], []),  # refused before it reads a damaged page
        (["optimize", str(spec), "--storage", url, "--no-progress"], []),
    ):
        assert_one_line_error(cli(*args), *needles)


class OwnPostgres:
    """A PostgreSQL 15 server of this test's own (initdb in a temporary folder, its own port), so that
    stopping it cannot disturb tests running beside it on the shared server."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        assert bins, "PostgreSQL's server binaries are missing (/usr/lib/postgresql/*/bin)"
        self.bin = bins[-1]
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # postgres refuses root
        folder.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
        self._run("initdb", "-D", str(folder / "data"), "-A", "trust", "-U", "postgres")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_owner, str(self.bin / tool), *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "log"), "-w", "start",
                  "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[OwnPostgres]:
    folder = Path(tempfile.mkdtemp(prefix="lrpo-pg-"))  # short: the socket path must fit 107 bytes
    folder.chmod(0o755)  # the server's own user must reach its folder inside
    server = OwnPostgres(folder / "pg", free_port())
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def optimize_until_running(spec: Path, url: str, name: str, *extra: str) -> subprocess.Popen[str]:
    """``optimize`` in the background, returned once a trial of ``name`` is running (after one finished, for
    several workers)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrpo_study", "optimize", str(spec), "--storage", url, "--no-progress", "--heartbeat", "1",
         *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    def running() -> bool:
        study = optuna.load_study(study_name=name, storage=url)
        return bool(study.get_trials(states=(TrialState.RUNNING,))) and ("--workers" not in extra or bool(study.get_trials(states=FINISHED)))

    try:
        wait_until(running, timeout=120, what=f"a trial of {name} runs", interval=0.3, alive=proc)
    except BaseException:
        proc.kill()
        raise
    return proc


def test_a_postgres_outage_mid_study_loses_no_trial(own_postgres: OwnPostgres, tmp_path: Path) -> None:
    spec = write_study(tmp_path / "s.toml", name="outage", n_trials=6, fixed="epochs = 6\nbatch_size = 128")
    url = own_postgres.url
    proc = optimize_until_running(spec, url, "outage", "--workers", "2")
    own_postgres.stop()  # every connection is cut; the server is gone for 5 s, longer than the heartbeat grace (3 s)
    time.sleep(5)
    own_postgres.start()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Exception in thread" not in err, err
    trials = optuna.load_study(study_name="outage", storage=url).get_trials()
    assert len([t for t in trials if t.state in FINISHED]) == 6
    assert [(t.number, t.user_attrs) for t in trials if t.state != TrialState.COMPLETE and t.state != TrialState.PRUNED] == []  # none lost


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_postgres_server_that_stays_away_is_one_line(workers: str, own_postgres: OwnPostgres, tmp_path: Path) -> None:
    # With two workers the one line comes from a worker process: what it means sat behind Optuna's own error.
    spec = write_study(tmp_path / "s.toml", name="gone", n_trials=4, fixed="epochs = 20\nbatch_size = 128")
    url = own_postgres.url
    proc = optimize_until_running(spec, url, "gone", "--storage-timeout", "5", "--workers", workers)
    own_postgres.stop()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    lines = stderr_lines(err)
    assert len(lines) == 1 and "unreachable for 5 s" in lines[0] and "run the same command again" in lines[0], err


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder whose filesystem refuses writes: a tmpfs remounted read-only (as root), or, for other
    users, a folder and files without write permission."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(folder)], check=False)


def make_read_only(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:
        for path in [*folder.rglob("*"), folder]:
            path.chmod(0o555 if path.is_dir() else 0o444)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_storage_on_a_read_only_filesystem_is_one_line(kind: str, read_only_folder: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{read_only_folder / 's.db'}" if kind == "sqlite" else f"journal:{read_only_folder / 's.log'}"
    spec = write_study(tmp_path / "s.toml", name="ro", n_trials=2, fixed="epochs = 1\nbatch_size = 256")
    assert run_cli("optimize", str(spec), "--storage", url, "--no-progress", "--no-cache").returncode == 0
    make_read_only(read_only_folder)
    more = write_study(tmp_path / "s.toml", name="ro", n_trials=3, fixed="epochs = 1\nbatch_size = 256")
    assert_one_line_error(run_cli("optimize", str(more), "--storage", url, "--no-progress", "--no-cache"))
    assert_one_line_error(run_cli("report", "--storage", url, "-o", str(tmp_path / "r.html")))
    proc = run_cli("export", "--storage", url, "--study", "ro", "--best", "accuracy", "-o", str(tmp_path / "x.json"))
    assert proc.returncode == 0 or (proc.returncode == 2 and len(stderr_lines(proc.stderr)) == 1), proc.stderr
