"""`optimize` against real storages, in real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from lrpo_study.study.storage import open_storage

from .conftest import (
    REPO,
    assert_one_line_error,
    run_cli,
    wait_until,
    write_study,
    write_task_study,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def load(name: str, url: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url))


def optimize(study: Path, storage: str, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = run_cli("optimize", str(study), "--storage", storage, "--no-progress", "--device", "cpu", *extra)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_sqlite_study_records_everything_and_optuna_cli_reads_it(tmp_path: Path) -> None:
    spec = write_study(
        tmp_path / "lrpo.toml", name="lrpo-small", method="lrpo", n_trials=3, fixed="lr = 0.05",
        search='pretrain_epochs = { type = "int", low = 1, high = 10 }\nfinetune_epochs = { type = "int", low = 1, high = 5 }',
    )
    url = f"sqlite:///{tmp_path / 'study.db'}"
    proc = optimize(spec, url)
    assert "Pareto trials of lrpo-small" in proc.stdout
    study = load("lrpo-small", url)
    trials = study.get_trials(states=FINISHED)
    assert len(trials) == 3
    paper = [t for t in trials if t.user_attrs.get("reference") == "paper"]
    assert len(paper) == 1 and paper[0].params == {"pretrain_epochs": 10, "finetune_epochs": 5}
    attrs = paper[0].user_attrs
    assert attrs["epochs"] == 16 and len(attrs["curves"]["val_accuracy"]) == 16
    assert set(attrs["curves"]) == {"val_accuracy", "val_loss", "train_loss", "lr", "seconds", "flops", "eval_flops", "samples"}
    assert attrs["train_flops"] == sum(attrs["curves"]["flops"]) > 0 and attrs["train_samples"] == 16 * 1024
    assert 0.5 <= attrs["alpha"] <= 2.0 and attrs["curves"]["lr"][10] == pytest.approx(0.05 * attrs["alpha"])
    for key in ("seed", "device", "torch_version", "lrpo_study_version", "train_seconds", "hyperparameters"):
        assert key in attrs, key
    assert paper[0].values[0] == max(attrs["curves"]["val_accuracy"])
    assert paper[0].values[1] == pytest.approx(sum(attrs["curves"]["seconds"]))
    assert study.metric_names == ["best_val_accuracy", "train_seconds"]

    optuna_cli = Path(sys.executable).with_name("optuna")
    out = subprocess.run(
        [str(optuna_cli), "best-trials", "--study-name", "lrpo-small", "--storage", url, "-f", "json"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert '"number"' in out.stdout

    # Same command again with a higher target resumes: only the missing trials run.
    optimize(spec, url, "--n-trials", "5")
    assert len(load("lrpo-small", url).get_trials(states=FINISHED)) == 5
    again = optimize(spec, url, "--n-trials", "5")
    assert "nothing to run" in again.stdout


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # retried_trial_number
def test_a_stalled_worker_s_trial_is_failed_by_the_heartbeat_and_retried(tmp_path: Path, pg_url: str) -> None:
    """The worker's process is alive (stopped, SIGSTOP) but its heartbeat stopped: our pid check leaves
    it alone, so only Optuna's heartbeat can fail the trial; its retry must bring the study to its target."""
    name = f"stalled-{uuid.uuid4().hex[:8]}"
    # Long trials (40 epochs), so the one seen running is still running when its worker is stopped a moment later.
    spec = write_study(tmp_path / "s.toml", name=name, n_trials=3, fixed="epochs = 40\nbatch_size = 128")
    url = pg_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrpo_study", "optimize", str(spec), "--storage", url, "--no-progress",
         "--heartbeat", "1", "--device", "cpu"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy(),
    )
    def sampled_and_running() -> bool:
        study = load(name, url)
        running = study.get_trials(states=(TrialState.RUNNING,))
        # Stopped before its lr is suggested, the trial would be retried with a fresh sample, not its own.
        return bool(study.get_trials(states=FINISHED) and running and running[0].params)

    wait_until(sampled_and_running, timeout=240, what="a trial runs with its lr after one finished", interval=0.5)
    proc.send_signal(signal.SIGSTOP)
    try:
        study = load(name, url)
        (stalled,) = study.get_trials(states=(TrialState.RUNNING,))
        assert stalled.params, "the worker was stopped before its trial sampled a value"
        optimize(spec, url, "--heartbeat", "1")
        study = load(name, url)
        assert len(study.get_trials(states=FINISHED)) == 3
        assert [t.number for t in study.get_trials(states=(TrialState.FAIL,))] == [stalled.number]
        assert "retried_from" not in stalled.user_attrs  # not our pid check: the process was alive
        retried = [t for t in study.get_trials(states=FINISHED)
                   if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == stalled.number]
        assert len(retried) == 1 and retried[0].params == stalled.params
        assert retried[0].user_attrs["retried_from"] == stalled.number  # in our record too, like a dead worker's retry
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        optuna.delete_study(study_name=name, storage=url)


@pytest.mark.parametrize("backend", ["journal", "postgres"])
def test_two_workers_produce_exactly_the_target(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    name = f"workers-{backend}-{uuid.uuid4().hex[:8]}"
    url = f"journal:{tmp_path / 'study.journal'}" if backend == "journal" else request.getfixturevalue("pg_url")
    spec = write_study(tmp_path / "s.toml", name=name, n_trials=6)
    try:
        optimize(spec, url, "--workers", "2")
        trials = load(name, url).get_trials()
        finished = [t for t in trials if t.state in FINISHED]
        assert len(finished) == 6
        numbers = [t.number for t in trials]
        assert len(numbers) == len(set(numbers))
        assert len({t.user_attrs["pid"] for t in finished}) == 2  # both worker processes ran trials
        assert {t.user_attrs["device"] for t in finished} == {"cpu"}  # each trial names its worker's device
    finally:
        if backend == "postgres":
            optuna.delete_study(study_name=name, storage=url)


def test_multi_objective_quantile_rule_prunes(tmp_path: Path) -> None:
    spec = write_study(
        tmp_path / "s.toml", name="prune-multi", n_trials=10, sampler="random", fixed="epochs = 5\nbatch_size = 128",
        search='lr = { type = "float", low = 1e-4, high = 0.3, log = true }',
        pruning='rule = "quantile"\nwarmup_epochs = 1\nmin_trials = 2\nquantile = 0.5\ncost_tolerance = 1.0',
    )
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optimize(spec, url)
    pruned = load("prune-multi", url).get_trials(states=(TrialState.PRUNED,))
    assert pruned
    for t in pruned:
        assert "quantile" in t.user_attrs["pruned_reason"]
        assert 1 < t.user_attrs["pruned_epoch"] < 5
        assert len(t.user_attrs["curves"]["val_accuracy"]) == t.user_attrs["pruned_epoch"]


def test_single_objective_median_pruner_prunes(tmp_path: Path) -> None:
    spec = write_study(
        tmp_path / "s.toml", name="prune-single", n_trials=10, sampler="random", fixed="epochs = 5\nbatch_size = 128",
        objectives='["best_val_accuracy"]', search='lr = { type = "float", low = 1e-4, high = 0.3, log = true }',
        pruning='rule = "median"\nwarmup_epochs = 1\nmin_trials = 2',
    )
    url = f"journal:{tmp_path / 'study.journal'}"
    optimize(spec, url)
    study = load("prune-single", url)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert pruned and all(1 < t.user_attrs["pruned_epoch"] < 5 for t in pruned)  # after the warm-up epoch, before the end
    assert study.best_value == max(t.user_attrs["best_val_accuracy"] for t in study.get_trials(states=(TrialState.COMPLETE,)))


def test_sqlite_with_several_workers_is_refused(tmp_path: Path) -> None:
    spec = write_study(tmp_path / "s.toml", name="x")
    proc = run_cli("optimize", str(spec), "--storage", f"sqlite:///{tmp_path / 'db.db'}", "--workers", "2")
    assert_one_line_error(proc, "journal", "postgresql")


def test_a_study_never_evaluates_the_test_data_and_records_no_test_metric(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lrpo_study.cli import main

    from . import user_task

    spec = write_task_study(tmp_path / "t.toml", name="untouched", task="tests.user_task:counts_test_passes")
    url = f"sqlite:///{tmp_path / 't.db'}"
    user_task.test_set_evaluations.clear()
    assert main(["optimize", str(spec), "--storage", url, "--no-progress", "--device", "cpu"]) == 0
    study = load("untouched", url)
    assert len(study.get_trials(states=FINISHED)) == 3
    assert user_task.test_set_evaluations == []
    assert not any(key.startswith("test_") for t in study.trials for key in t.user_attrs)
    assert main(["confirm", "--storage", url, "--seeds", "1", "--device", "cpu", "--task", "tests.user_task:counts_test_passes"]) == 0  # confirm does score it
    assert user_task.test_set_evaluations
    capsys.readouterr()


def test_progress_in_a_log_is_a_line_per_finished_trial(tmp_path: Path) -> None:
    spec = write_task_study(tmp_path / "p.toml", name="logged", n_trials=20, objectives='["best_val_accuracy"]', epochs=1)
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:  # not a terminal, as under CI, nohup or a job scheduler
        proc = subprocess.run([sys.executable, "-m", "lrpo_study", "optimize", str(spec), "--storage",
                               f"sqlite:///{tmp_path / 'p.db'}", "--device", "cpu"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=stderr, text=True, timeout=300)
    assert proc.returncode == 0, log.read_text()
    lines = log.read_text().splitlines()
    assert 1 <= len(lines) <= 25 and "\r" not in log.read_text(), lines
    assert lines[-1].startswith("logged: 20/20 trials finished"), lines
    assert "Best trial of logged (of 20 complete):" in proc.stdout


def test_workers_are_spread_over_the_gpus_torch_sees() -> None:
    from lrpo_study.training.devices import parse_devices, worker_devices

    spread = worker_devices(device="auto", devices=None, workers=4, trials_per_gpu=2, visible=2)
    assert spread == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]  # worker i on GPU i mod K
    picked = worker_devices(device="cuda", devices=parse_devices("cuda:3,1"), workers=3, trials_per_gpu=2, visible=4)
    assert picked == ["cuda:3", "cuda:1", "cuda:3"]
    assert worker_devices(device="auto", devices=None, workers=3, trials_per_gpu=1, visible=0) == ["cpu"] * 3
    assert worker_devices(device="cpu", devices=None, workers=2, trials_per_gpu=1, visible=8) == ["cpu"] * 2


@pytest.mark.parametrize(("flags", "needles"), [
    (["--devices", "0"], ["--devices names cuda:0", "torch sees 0 CUDA devices"]),
    (["--devices", "cuda:0", "--device", "cpu"], ["--devices picks GPUs", "--device cpu"]),
    (["--devices", "gpu0"], ["--devices", "'gpu0'"]),
    (["--devices", "0,0"], ["cuda:0 twice"]),
    (["--trials-per-gpu", "0"], ["--trials-per-gpu must be >= 1"]),
    (["--device", "cuda"], ["--device cuda", "no CUDA device"]),
])
def test_devices_torch_does_not_see_are_refused_in_one_line(tmp_path: Path, flags: list[str], needles: list[str],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from lrpo_study.cli import main

    spec = write_study(tmp_path / "d.toml", name="devices")
    assert main(["optimize", str(spec), "--storage", f"sqlite:///{tmp_path / 'd.db'}", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(n in err[0] for n in needles), err
    assert not (tmp_path / "d.db").exists()

