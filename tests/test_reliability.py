"""Dead workers, Ctrl-C, divergence, password masking, and a PostgreSQL soak: real processes, real storages."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from lrpo_study.study.storage import open_storage

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
LONG = "epochs = 100\nbatch_size = 128"  # a trial runs for seconds even on a fast machine: the tests find it RUNNING


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lrpo_study", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, **(env or {})},
    )


def wait_for_running(name: str, url: str, *, older_than: float, timeout: float = 180) -> optuna.trial.FrozenTrial:
    """A RUNNING trial that has been training for ``older_than`` seconds (so it has checkpoints)."""

    def old_enough() -> optuna.trial.FrozenTrial | None:
        study = optuna.load_study(study_name=name, storage=open_storage(url))
        return next((t for t in study.get_trials(states=(TrialState.RUNNING,))
                     if "pid" in t.user_attrs and t.datetime_start and time.time() - t.datetime_start.timestamp() > older_than), None)

    return wait_until(old_enough, timeout=timeout, what=f"a trial of {name} runs for {older_than} s", interval=0.3)


@pytest.mark.parametrize("backend", ["journal", "postgres"])
def test_killed_worker_trial_is_failed_retried_and_resumed(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    name = f"dead-{backend}-{uuid.uuid4().hex[:8]}"
    url = f"journal:{tmp_path / 's.journal'}" if backend == "journal" else request.getfixturevalue("pg_url")
    spec = write_study(tmp_path / "s.toml", name=name, n_trials=6, fixed=LONG)
    checkpoints = tmp_path / "ckpt"
    proc = start("optimize", str(spec), "--storage", url, "--workers", "3", "--no-progress", "--device", "cpu",
                 "--heartbeat", "2", "--checkpoint-dir", str(checkpoints))
    try:
        victim = wait_for_running(name, url, older_than=1.5)
        os.kill(victim.user_attrs["pid"], signal.SIGKILL)
        out, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err
        study = optuna.load_study(study_name=name, storage=open_storage(url))
        trials = study.get_trials()
        assert len([t for t in trials if t.state in FINISHED]) == 6
        assert not [t for t in trials if t.state == TrialState.RUNNING]
        assert len({t.number for t in trials}) == len(trials)
        assert trials[victim.number].state == TrialState.FAIL
        retries = [t for t in trials if t.user_attrs.get("retried_from") == victim.number]
        assert len(retries) == 1 and retries[0].state in FINISHED
        assert retries[0].params == victim.params
        assert retries[0].user_attrs.get("resumed_from_epoch", 0) >= 1
        assert len(retries[0].user_attrs["curves"]["val_accuracy"]) == retries[0].user_attrs["epochs"]
        assert not list(checkpoints.glob("*.pt"))  # finished trials clean up after themselves
        export = tmp_path / "settings.json"
        assert cli("export", "--storage", url, "--study", name, "--pareto", "-o", str(export)).returncode == 0
    finally:
        proc.kill()
        if backend == "postgres":
            optuna.delete_study(study_name=name, storage=url)


def test_ctrl_c_marks_the_trial_failed_and_the_same_command_finishes(tmp_path: Path) -> None:
    spec = write_study(tmp_path / "s.toml", name="sigint", n_trials=2, fixed=LONG)
    url = f"sqlite:///{tmp_path / 's.db'}"
    args = ("optimize", str(spec), "--storage", url, "--no-progress", "--device", "cpu")
    proc = start(*args)
    wait_for_running("sigint", url, older_than=0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)  # a hang fails here; speed itself is not asserted in tests
    assert proc.returncode == 130, err
    lines = stderr_lines(err)
    assert len(lines) == 1 and "To resume, run: python -m lrpo_study optimize" in lines[0], err
    study = optuna.load_study(study_name="sigint", storage=url)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert study.get_trials(states=(TrialState.FAIL,))
    assert run_cli(*args, timeout=900).returncode == 0  # two 100-epoch trials: minutes on a loaded 2-core machine
    assert len(optuna.load_study(study_name="sigint", storage=url).get_trials(states=FINISHED)) == 2


def test_divergence_prunes_with_a_reason_and_the_study_goes_on(tmp_path: Path) -> None:
    spec = write_study(
        tmp_path / "s.toml", name="diverge", method="greedylr", n_trials=3, sampler="random",
        fixed="epochs = 12\nbatch_size = 128\npatience = 0\nfactor = 0.25\nmax_lr = 1e3\nmin_lr = 1e-3",
        search='lr = { type = "float", low = 0.5, high = 2.0 }',
    )
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert cli("optimize", str(spec), "--storage", url, "--no-progress").returncode == 0
    study = optuna.load_study(study_name="diverge", storage=url)
    trials = study.get_trials(states=FINISHED)
    assert len(trials) == 3
    diverged = [t for t in trials if t.user_attrs.get("pruned_reason", "").startswith("diverged")]
    assert diverged and all(t.state == TrialState.PRUNED for t in diverged)
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        assert all(v == v and abs(v) != float("inf") for v in t.values)


def test_passwords_never_appear_in_output_or_exports(pg_url: str, tmp_path: Path) -> None:
    secret = "Sup3rS3cret" + uuid.uuid4().hex[:6]
    url = pg_url.replace("postgres@", f"postgres:{secret}@")  # trust auth accepts any password
    name = f"secret-{uuid.uuid4().hex[:8]}"
    spec = write_study(tmp_path / "s.toml", name=name, n_trials=1)
    try:
        outputs = []
        proc = cli("optimize", str(spec), "--storage", url)
        assert proc.returncode == 0, proc.stderr
        outputs += [proc.stdout, proc.stderr]
        assert "postgres:***@" in proc.stdout
        export = tmp_path / "settings.json"
        proc = cli("export", "--storage", url, "--study", name, "--trial", "0", "-o", str(export))
        outputs += [proc.stdout, proc.stderr, export.read_text()]
        assert json.loads(export.read_text())["provenance"]["storage"].startswith("postgresql+psycopg://postgres:***@")
        for bad in (url.replace("postgres:", "nobody:"), url.replace("5432", "1")):
            proc = cli("optimize", str(spec), "--storage", bad)
            assert_one_line_error(proc, "***")
            outputs += [proc.stdout, proc.stderr]
        assert not any(secret in text for text in outputs)
    finally:
        optuna.delete_study(study_name=name, storage=pg_url)


def test_a_password_with_an_at_sign_is_masked_whole_and_the_storage_can_come_from_the_environment(
    pg_url: str, tmp_path: Path,
) -> None:
    secret = "Sup3r@S3cr3t" + uuid.uuid4().hex[:6]  # unencoded: the driver takes "S3cr3t...@127.0.0.1" for the host
    bad = pg_url.replace("postgres@", f"postgres:{secret}@")
    proc = cli("report", "--storage", bad, "-o", str(tmp_path / "r.html"))
    assert_one_line_error(proc, "postgres:***@127.0.0.1")
    assert not any(part in proc.stdout + proc.stderr for part in (secret, *secret.split("@")))
    # The same URL from the environment: nothing on the command line, and still never printed.
    proc = cli("report", "-o", str(tmp_path / "r.html"), env={"LRPO_STORAGE": bad})
    assert_one_line_error(proc, "postgres:***@127.0.0.1")
    assert not any(part in proc.stdout + proc.stderr for part in (secret, *secret.split("@")))
    good_secret = "Env" + uuid.uuid4().hex[:8]
    name = f"env-{uuid.uuid4().hex[:8]}"
    spec = write_study(tmp_path / "s.toml", name=name, n_trials=1, fixed="epochs = 1\nbatch_size = 256")
    try:
        proc = cli("optimize", str(spec), "--no-progress", "--device", "cpu",
                   env={"LRPO_STORAGE": pg_url.replace("postgres@", f"postgres:{good_secret}@")})
        assert proc.returncode == 0, proc.stderr
        assert good_secret not in proc.stdout + proc.stderr and "postgres:***@" in proc.stdout
        assert len(optuna.load_study(study_name=name, storage=pg_url).get_trials()) == 1  # it went to that storage
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=pg_url)


def test_dashboard_warns_when_bound_beyond_this_machine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(storage=url, study_name="empty")
    proc = start("dashboard", "--storage", url, "--host", "0.0.0.0", "--port", str(free_port()))
    try:
        ready, _, _ = select.select([proc.stderr], [], [], 30)  # a silent server fails here, not at the suite's timeout
        assert ready, "the dashboard printed nothing on stderr within 30 s"
        first = proc.stderr.readline()
    finally:
        proc.kill()
        proc.wait()
    assert "warning" in first and "no authentication" in first


def test_no_user_file_reaches_eval_exec_or_pickle() -> None:
    sources = {p: p.read_text() for p in (REPO / "lrpo_study").rglob("*.py")}
    for path, text in sources.items():
        assert not re.search(r"(?<![.\w])(eval|exec)\(|import pickle|pickle\.|yaml\.load\(", text), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)


def test_postgres_soak_four_workers_forty_trials(pg_url: str, tmp_path: Path) -> None:
    name = f"soak-{uuid.uuid4().hex[:8]}"
    spec = write_study(tmp_path / "s.toml", name=name, n_trials=40, fixed="epochs = 2\nbatch_size = 256")
    try:
        start_time = time.perf_counter()
        proc = run_cli("optimize", str(spec), "--storage", pg_url, "--workers", "4", "--no-progress", timeout=600)
        wall = time.perf_counter() - start_time
        assert proc.returncode == 0, proc.stderr
        assert "Error" not in proc.stderr and "Traceback" not in proc.stderr
        trials = optuna.load_study(study_name=name, storage=pg_url).get_trials()
        assert len([t for t in trials if t.state in FINISHED]) == 40 and len(trials) == 40
        print(f"\nsoak: 40 trials, 4 workers on PostgreSQL: {wall:.1f} s wall, {40 / wall * 60:.1f} trials/min")
    finally:
        optuna.delete_study(study_name=name, storage=pg_url)


def test_several_optimize_processes_stop_at_the_study_total_with_their_own_samplers(tmp_path: Path) -> None:
    """Two terminals running the same command on one storage: 6 trials in all, no parameter set twice."""
    spec = write_study(tmp_path / "s.toml", name="shared", n_trials=6, sampler="random", fixed="epochs = 2\nbatch_size = 256")
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert cli("optimize", str(spec), "--storage", url, "--n-trials", "1", "--no-progress").returncode == 0  # create it once
    procs = [
        subprocess.Popen([sys.executable, "-m", "lrpo_study", "optimize", str(spec), "--storage", url, "--no-progress"],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    trials = optuna.load_study(study_name="shared", storage=url).get_trials(states=FINISHED)
    assert len(trials) == 6
    params = [t.params["lr"] for t in trials]
    assert len(set(params)) == len(params)


def test_a_changed_study_file_is_refused_on_resume_naming_what_changed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = write_study(tmp_path / "s.toml", name="edited", n_trials=1, fixed="epochs = 2\nbatch_size = 256")
    assert cli("optimize", str(spec), "--storage", url, "--no-progress").returncode == 0
    more = write_study(tmp_path / "s.toml", name="edited", n_trials=2, fixed="epochs = 2\nbatch_size = 256")
    assert cli("optimize", str(more), "--storage", url, "--no-progress").returncode == 0  # a larger total is fine
    text = spec.read_text()
    for edited, needles in [  # two edits a file: each is named
        (text.replace("train_size = 1024", "train_size = 2048").replace("log = true", "log = false"),
         ["task.train_size: 1024 → 2048", "search.lr.log: True → False"]),
        (text.replace('"best_val_accuracy", "train_seconds"', '"final_val_accuracy", "epochs"').replace("epochs = 2", "epochs = 3"),
         ["objectives[0]", "final_val_accuracy", "fixed.epochs: 2 → 3"]),
    ]:
        spec.write_text(edited)
        assert_one_line_error(cli("optimize", str(spec), "--storage", url, "--no-progress"), *needles, "new [study] name")
    assert len(optuna.load_study(study_name="edited", storage=url).trials) == 2


SWALLOWED = r"""
import os, signal, sys
from lrpo_study import interrupts
from lrpo_study.training.hyperparameters import resolve
from lrpo_study.training.loop import train
from tests.user_task import classification

interrupts.install()

class Finalizer:
    def __del__(self):  # Ctrl-C arriving here is printed as "Exception ignored" and swallowed by Python
        os.kill(os.getpid(), signal.SIGINT)

with interrupts.as_exception():  # as inside a study: Ctrl-C is raised, to fail the running trial
    Finalizer()
    print("survived the swallowed interrupt", flush=True)
    try:
        train(task=classification(), method="fixed", hyperparameters=resolve("fixed", {"epochs": 1, "batch_size": 32}))
    except KeyboardInterrupt:
        print("raised again at the next batch")
"""


def test_a_ctrl_c_swallowed_by_a_finalizer_is_raised_again(tmp_path: Path) -> None:
    script = tmp_path / "swallowed.py"
    script.write_text(SWALLOWED)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "Exception ignored" in proc.stderr and "survived the swallowed interrupt" in proc.stdout, proc.stderr
    assert "raised again at the next batch" in proc.stdout, (proc.stdout, proc.stderr)


CTRL_C_WHILE_SAVING = r"""
import os, signal, sys, threading
import torch
from lrpo_study import interrupts
from lrpo_study.training.checkpoints import CheckpointStore

interrupts.install()
state = {"weights": [torch.ones(1_000_000) for _ in range(10)]}  # 40 MB: each save takes tens of milliseconds
store = CheckpointStore(sys.argv[1], what="trajectory cache entries")
threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
with interrupts.as_exception():
    try:
        for i in range(200):
            store.save(f"k{i}", state)
        print("saved everything: the interrupt was lost")
    except KeyboardInterrupt:
        print("interrupted")
"""


def test_a_ctrl_c_during_a_cache_write_is_the_interrupt_not_a_failed_write(tmp_path: Path) -> None:
    # torch.save turns a KeyboardInterrupt raised inside its writes into a RuntimeError ("unexpected pos"),
    # which looks like a full disk: it must stay an interrupt, with no warning and no partial file.
    script = tmp_path / "saving.py"
    script.write_text(CTRL_C_WHILE_SAVING)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "cache")], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.strip() == "interrupted" and proc.stderr == "", (proc.stdout, proc.stderr)
    assert not list((tmp_path / "cache").glob(".*.tmp"))


# Seconds after the CLI began importing torch (its first line, which installs the handler, ran before):
# inside torch's import (NumPy initialised from torch's C code), torchvision's, reading the data, training.
SIGINT_POINTS = (0.0, 0.1, 0.3, 0.6, 1.0, 1.5, 2.5, 3.5)


def _importing_torch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def test_ctrl_c_anywhere_in_start_up_is_one_line_and_130() -> None:
    procs = [start("run", "--method", "fixed", "--epochs", "20") for _ in SIGINT_POINTS]
    began: dict[int, float] = {}
    pending = dict(enumerate(SIGINT_POINTS))
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:  # each process is interrupted at its own point
        for i, delay in list(pending.items()):
            pid = procs[i].pid
            if i not in began and _importing_torch(pid):
                began[i] = time.monotonic()
            if i in began and time.monotonic() >= began[i] + delay:
                procs[i].send_signal(signal.SIGINT)
                del pending[i]
        time.sleep(0.01)
    assert not pending, f"never started importing torch: {pending}"
    for delay, proc in zip(SIGINT_POINTS, procs, strict=True):
        _, err = proc.communicate(timeout=120)
        assert (proc.returncode, stderr_lines(err)) == (130, ["lrpo_study: interrupted"]), (delay, err)


def test_ctrl_c_to_the_process_group_with_two_workers_is_one_line_and_fails_the_trials(tmp_path: Path) -> None:
    spec = write_study(tmp_path / "s.toml", name="sigint2", n_trials=4, fixed=LONG)
    url = f"journal:{tmp_path / 's.journal'}"
    args = ("optimize", str(spec), "--storage", url, "--no-progress", "--device", "cpu", "--workers", "2")
    proc = subprocess.Popen([sys.executable, "-m", "lrpo_study", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy(), start_new_session=True)
    wait_for_running("sigint2", url, older_than=0.5)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the parent and its workers
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(stderr_lines(err)) == 1, err
    study = optuna.load_study(study_name="sigint2", storage=open_storage(url))
    assert not study.get_trials(states=(TrialState.RUNNING,)) and study.get_trials(states=(TrialState.FAIL,))


def _spawned_workers(parent: int) -> list[int]:
    """The worker processes ``parent`` spawned (multiprocessing's spawn_main), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):  # a process that ended while we looked
            continue
    return found


WORKER_SIGINT_POINTS = (0.0, 0.4, 1.2, 2.5)  # seconds after the workers appear: imports, storage, first trial


def test_ctrl_c_to_the_process_group_while_workers_start_is_one_line_and_leaves_nothing_running(tmp_path: Path) -> None:
    procs, urls = [], []
    for i, _ in enumerate(WORKER_SIGINT_POINTS):
        spec = write_study(tmp_path / f"s{i}.toml", name=f"start{i}", n_trials=4, fixed=LONG)
        urls.append(f"journal:{tmp_path / f's{i}.journal'}")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "lrpo_study", "optimize", str(spec), "--storage", urls[-1], "--no-progress",
             "--device", "cpu", "--workers", "2"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
            start_new_session=True,
        ))
    began: dict[int, float] = {}
    pending = dict(enumerate(WORKER_SIGINT_POINTS))
    deadline = time.monotonic() + 180
    while pending and time.monotonic() < deadline:
        for i, delay in list(pending.items()):
            if i not in began and _spawned_workers(procs[i].pid):
                began[i] = time.monotonic()
            if i in began and time.monotonic() >= began[i] + delay:
                os.killpg(procs[i].pid, signal.SIGINT)
                del pending[i]
        time.sleep(0.02)
    assert not pending, f"no workers appeared: {pending}"
    for i, (delay, proc) in enumerate(zip(WORKER_SIGINT_POINTS, procs, strict=True)):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130 and len(stderr_lines(err)) == 1, (delay, err)
        assert "interrupted" in err and "Traceback" not in err and "lock" not in err, (delay, err)
        with contextlib.suppress(KeyError):  # interrupted before the study was created
            study = optuna.load_study(study_name=f"start{i}", storage=open_storage(urls[i]))
            assert not study.get_trials(states=(TrialState.RUNNING,)), delay


def test_studies_and_trials_not_made_by_lrpo_study_are_skipped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = write_study(tmp_path / "s.toml", name="ours", n_trials=2, fixed="epochs = 2\nbatch_size = 256")
    assert cli("optimize", str(spec), "--storage", url, "--no-progress").returncode == 0
    ours = optuna.load_study(study_name="ours", storage=url)
    ours.add_trial(optuna.trial.create_trial(values=[0.99, 0.01]))  # the best trial, made by another tool
    plain = optuna.create_study(study_name="plain", storage=url, directions=["maximize", "minimize"])
    plain.add_trial(optuna.trial.create_trial(values=[0.5, 1.0]))
    out = tmp_path / "p.json"
    proc = cli("export", "--storage", url, "--study", "ours", "--pareto", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    exported = json.loads(out.read_text())["trials"]
    assert exported and all(t["method"] == "fixed" for t in exported)  # our front, not hidden by the foreign trial
    assert_one_line_error(cli("export", "--storage", url, "--study", "plain", "--pareto", "-o", str(out)), "not made by lrpo_study")
    proc = cli("confirm", "--storage", url, "--seeds", "1")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "plain" not in proc.stdout and "ours" in proc.stdout
    proc = cli("report", "--storage", url, "-o", str(tmp_path / "r.html"))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one and two workers get the same thread count on one core")
def test_a_trial_killed_under_one_thread_count_is_not_resumed_under_another(tmp_path: Path) -> None:
    """1 worker trains with every core's threads, 2 workers with half each: another summation order, so another
    trajectory; the retried trial must start over instead of mixing the two."""
    name = "threads"
    url = f"journal:{tmp_path / 's.journal'}"
    spec = write_study(tmp_path / "s.toml", name=name, n_trials=1, fixed=LONG)  # the retry alone: 100 epochs, not 200
    checkpoints = tmp_path / "ckpt"
    every_core = {"OMP_NUM_THREADS": str(os.cpu_count())}  # the suite's processes train with one thread otherwise
    proc = start("optimize", str(spec), "--storage", url, "--no-progress", "--checkpoint-dir", str(checkpoints), env=every_core)
    victim = wait_for_running(name, url, older_than=1.5)
    # on a loaded machine the first epoch may take longer than the probe: wait for its checkpoint
    wait_until(lambda: list(checkpoints.glob("*.pt")), timeout=60, what="the first checkpoint")
    proc.kill()
    proc.wait()
    assert list(checkpoints.glob("*.pt")), "the killed trial must have left a checkpoint"
    again = run_cli("optimize", str(spec), "--storage", url, "--no-progress", "--checkpoint-dir", str(checkpoints),
                    "--workers", "2")
    assert again.returncode == 0, again.stderr
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()
    (retry,) = [t for t in trials if t.user_attrs.get("retried_from") == victim.number]
    assert retry.user_attrs["threads"] != victim.user_attrs["threads"]
    assert "resumed_from_epoch" not in retry.user_attrs


def test_modules_torch_imports_lazily_are_loaded_before_a_trial_can_be_interrupted(tmp_path: Path) -> None:
    # A Ctrl-C inside such an import, once trials run, is raised in a half-imported module (or swallowed by
    # torch's C code): they are imported while a Ctrl-C still ends the process at once.
    note = tmp_path / "imports.json"
    spec = tmp_path / "s.toml"
    spec.write_text(
        '[study]\nname = "lazy"\nmethod = "fixed"\nn_trials = 1\n'
        f'[task]\nname = "tests.user_task:notes_imports_at_first_model"\nnote = "{note}"\n'
        '[fixed]\nepochs = 1\nbatch_size = 64\n[search]\nlr = { type = "float", low = 0.01, high = 0.2 }\n'
    )
    proc = run_cli("optimize", str(spec), "--storage", f"sqlite:///{tmp_path / 's.db'}", "--no-progress", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(note.read_text()) == {"numpy": True, "torch._dynamo": True}


OPEN_AT = r"""
import sys, time
from lrpo_study.study.storage import open_storage
import optuna
url, at = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, at - time.time()))  # every process released at the same instant
storage = open_storage(url)
optuna.create_study(storage=storage, study_name="race", directions=["maximize"], load_if_exists=True)
print("opened")
"""


def test_processes_creating_the_schema_of_one_empty_postgresql_database_at_once_all_run(pg_url: str) -> None:
    import psycopg

    admin = pg_url.replace("postgresql+psycopg", "postgresql")
    for attempt in range(2):
        name = f"lrpo_empty_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        try:
            url = pg_url.rsplit("/", 1)[0] + f"/{name}"
            at = time.time() + 4.0  # after every interpreter has imported
            procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT, url, str(at)], cwd=REPO, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
            outputs = [p.communicate(timeout=120) for p in procs]
            for p, (out, err) in zip(procs, outputs, strict=True):
                assert p.returncode == 0 and out.strip() == "opened", (attempt, err)
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
