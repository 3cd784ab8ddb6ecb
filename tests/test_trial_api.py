"""Your own training loop as a study's trials: a plain loop in your own Optuna study, a LightningModule and
the Hugging Face Trainer through a study file's ``loop``, and the built-in loop through the same record."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState
from optuna_dashboard import get_note

import lrpo_study
from lrpo_study import TrialRun
from lrpo_study.study.objective import Objective
from lrpo_study.study.storage import open_storage
from lrpo_study.training.loop import train

from . import user_loops
from .conftest import REPO, assert_one_line_error, cli, run_cli, stderr_lines

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SEARCH = {"lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True}}
# Prune on accuracy alone, whatever the seconds (cost_tolerance 1): the test must not hang on the machine's timing.
PRUNING = {"rule": "quantile", "warmup_epochs": 1, "min_trials": 2, "cost_tolerance": 1.0}


def spec_dict(name: str, **task: str) -> dict[str, object]:
    return {
        "study": {"name": name, "method": "cosine", "objectives": ["final_val_accuracy", "train_seconds"], "n_trials": 6},
        "task": task, "pruning": PRUNING, "fixed": {"batch_size": 64, "epochs": 3}, "search": SEARCH,
    }


def replayed_lrs(settings: dict[str, object], steps_per_epoch: int) -> list[float]:
    """The exported schedule stepped as the loop steps it: the mean lr over each epoch's optimizer steps."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = lrpo_study.load_schedule(settings, optimizer, steps_per_epoch=steps_per_epoch)
    means = []
    for _ in range(schedule.epochs):
        lrs = []
        for _ in range(steps_per_epoch):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if schedule.interval == "step":
                schedule.step()
        if schedule.interval == "epoch":
            schedule.step()
        means.append(sum(lrs) / len(lrs))
    return means


def check_study_is_ours(url: str, name: str, artifacts: Path, tmp_path: Path, *, min_pruned: int = 1) -> optuna.Study:
    """Every finished trial has its record, figure and note; report takes the study; export replays the lr."""
    storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage)
    finished = study.get_trials(states=FINISHED)
    assert len(finished) == 6
    assert len([t for t in finished if t.state == TrialState.PRUNED]) >= min_pruned
    for t in finished:
        curves = t.user_attrs["curves"]
        assert t.user_attrs["method"] == "cosine" and t.user_attrs["epochs"] == len(curves["val_loss"]) >= 1
        assert set(curves) == {"train_loss", "val_loss", "val_accuracy", "lr", "seconds", "flops", "samples"}  # the loop counts its steps
        assert t.user_attrs["train_samples"] == 1024 * len(curves["val_loss"]) and t.user_attrs["train_flops"] > 0
        assert t.user_attrs["train_seconds"] == pytest.approx(sum(curves["seconds"]))
        note = get_note(optuna.Trial(study, t._trial_id))
        assert f"trial {t.number}" in note.lower() or "cosine" in note, note
        assert [m.mimetype for m in get_all_artifact_meta(t, storage=storage)] == ["image/svg+xml"]
    for t in study.get_trials(states=(TrialState.PRUNED,)):
        assert t.user_attrs["pruned_reason"] and t.user_attrs["epochs"] < t.user_attrs["hyperparameters"]["epochs"]
    report = cli("report", "--storage", url, "-o", str(tmp_path / "report.html"))
    assert report.returncode == 0 and name in report.stdout, report.stderr
    exported = tmp_path / "pareto.json"
    assert cli("export", "--storage", url, "--study", name, "--pareto", "-o", str(exported)).returncode == 0
    for entry in json.loads(exported.read_text())["trials"]:
        trial = study.trials[entry["provenance"]["trial"]]
        lrs = replayed_lrs(entry, trial.user_attrs["steps_per_epoch"])
        assert lrs == pytest.approx(trial.user_attrs["curves"]["lr"], rel=1e-9), trial.number
    return study


def test_a_plain_loop_in_your_own_study_is_a_study_of_ours(tmp_path: Path) -> None:
    spec = lrpo_study.parse_spec(spec_dict("plain", loop="tests.user_loops:plain_fit"), where="test")
    url = f"sqlite:///{tmp_path / 'own.db'}"
    study = lrpo_study.create_study(spec, storage=url)
    artifacts = tmp_path / "own.db.artifacts"

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        run = TrialRun(trial, spec, artifact_dir=str(artifacts))
        user_loops.plain_fit(run)
        return run.finish()

    study.optimize(objective, n_trials=spec.n_trials)
    study = check_study_is_ours(url, "plain", artifacts, tmp_path)
    best = max(study.best_trials, key=lambda t: t.values[0])
    proc = cli("confirm", "--storage", url, "--study", "plain", "--trial", str(best.number), "--seeds", "1,2",
               "--task", "tests.user_loops:plain_fit")
    assert proc.returncode == 0, proc.stderr
    confirmed = optuna.load_study(study_name="plain", storage=url).user_attrs
    result = confirmed[f"confirm:{best.number}"]
    assert result["metric"] == "test_accuracy" and len(result["values"]) == 2 and 0.3 < min(result["values"]) <= 1
    with pytest.raises(ValueError, match="names its loop"):
        lrpo_study.create_study(lrpo_study.parse_spec(spec_dict("noloop"), where="test"), storage=url)


def test_a_lightning_module_trains_the_trials_with_its_own_loss(tmp_path: Path) -> None:
    path = tmp_path / "lightning.toml"
    path.write_text(
        '[study]\nname = "lit"\nmethod = "cosine"\nobjectives = ["final_val_accuracy", "train_seconds"]\nn_trials = 6\n'
        '[task]\nloop = "tests.user_loops:lightning_fit"\n'
        '[pruning]\nrule = "quantile"\nwarmup_epochs = 1\nmin_trials = 2\ncost_tolerance = 1.0\n'
        '[fixed]\nbatch_size = 64\nepochs = 3\n[search]\nlr = { type = "float", low = 1e-4, high = 1.0, log = true }\n'
    )
    url = f"sqlite:///{tmp_path / 'lit.db'}"
    proc = cli("optimize", str(path), "--storage", url, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    study = check_study_is_ours(url, "lit", tmp_path / "lit.db.artifacts", tmp_path)
    # Cross-entropy against targets smoothed by 0.5 over 10 classes cannot fall below the targets' entropy;
    # plain cross-entropy (what our loop would have trained on) falls far below it on this data.
    eps = user_loops.LABEL_SMOOTHING
    p_true, p_other = 1 - eps + eps / 10, eps / 10
    floor = -(p_true * math.log(p_true) + 9 * p_other * math.log(p_other))
    losses = [loss for t in study.get_trials(states=FINISHED) for loss in t.user_attrs["curves"]["train_loss"]]
    assert min(losses) >= floor - 1e-4
    val_losses = [t.user_attrs["curves"]["val_loss"][-1] for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert min(val_losses) < floor  # the validation loss is the module's plain cross-entropy
    no_test = cli("confirm", "--storage", url, "--study", "lit", "--trial", str(study.best_trials[0].number), "--seeds", "1",
                  "--task", "tests.user_loops:lightning_fit")
    # Lightning's own INFO lines come first (the loop is the user's); ours is the one line at the end
    assert no_test.returncode == 2 and "Traceback" not in no_test.stderr, no_test.stderr
    assert "gave no test score" in stderr_lines(no_test.stderr)[-1]


def test_hf_trainer_trials_on_two_workers_with_an_optuna_pruner(tmp_path: Path) -> None:
    path = tmp_path / "hf.toml"
    path.write_text(
        '[study]\nname = "hf"\nmethod = "cosine"\nobjectives = ["final_val_loss"]\nn_trials = 6\n'
        '[task]\nloop = "tests.user_loops:hf_fit"\n'
        '[pruning]\nrule = "median"\nwarmup_epochs = 1\nmin_trials = 2\n[fixed]\nbatch_size = 32\noptimizer = "adamw"\n'
        'epochs = 3\n[search]\nlr = { type = "float", low = 1e-5, high = 3e-2, log = true }\n'
    )
    url = f"journal:{tmp_path / 'hf.journal'}"
    proc = run_cli("optimize", str(path), "--storage", url, "--no-progress", "--workers", "2", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="hf", storage=open_storage(url))
    finished = study.get_trials(states=FINISHED)
    assert len(finished) == 6 and not study.get_trials(states=(TrialState.RUNNING, TrialState.FAIL))
    for t in finished:
        assert t.user_attrs["epochs"] == len(t.user_attrs["curves"]["val_loss"]) >= 1
        assert "val_accuracy" not in t.user_attrs["curves"]
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert pruned and all(t.user_attrs["pruned_reason"].startswith("optuna median pruner at epoch") for t in pruned)
    assert all(t.user_attrs["epochs"] == t.user_attrs["pruned_epoch"] < 3 for t in pruned)  # stopped there, not after


def test_the_built_in_loop_s_values_are_its_own_results(small_task: lrpo_study.Task) -> None:
    """The objective records through TrialRun: its values are exactly what train() itself returns."""
    spec = lrpo_study.parse_spec({
        "study": {"name": "same", "method": "cosine", "objectives": ["best_val_accuracy", "final_val_loss", "train_seconds"],
                  "n_trials": 2},
        "task": {"name": "fashion-mnist", "train_size": 2048, "val_size": 512}, "fixed": {"batch_size": 256, "epochs": 2},
        "search": {"lr": {"type": "float", "low": 0.01, "high": 0.3, "log": True}},
    }, where="test")
    study = optuna.create_study(directions=spec.directions, sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(Objective(spec, small_task, torch.device("cpu")), n_trials=2)
    for t in study.trials:
        result = train(task=small_task, method="cosine", hyperparameters=t.user_attrs["hyperparameters"], seed=spec.train_seed)
        assert t.values[:2] == [result.value("best_val_accuracy"), result.value("final_val_loss")]
        assert t.user_attrs["curves"]["val_loss"] == result.curves["val_loss"]


@pytest.mark.parametrize(("loop", "needle"), [
    ("silent_fit", "without reporting any epoch"),
    ("greedy_fit", "one too many"),
    ("loss_only_fit", "needs val_accuracy"),
    ("not_there", "has no attribute"),
    ("NOT_CALLABLE", "is not callable"),
])
def test_misused_loops_are_one_line_errors(loop: str, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        f'[study]\nname = "bad"\nmethod = "fixed"\nn_trials = 1\n[task]\nloop = "tests.user_loops:{loop}"\n'
        '[fixed]\nepochs = 2\nlr = 0.1\n'
    )
    assert_one_line_error(cli("optimize", str(path), "--storage", f"sqlite:///{tmp_path / 'b.db'}", "--no-progress"), needle)


def test_misuse_of_the_api_is_a_value_error_naming_the_cause() -> None:
    spec = lrpo_study.parse_spec(spec_dict("api", loop="tests.user_loops:plain_fit"), where="test")
    study = optuna.create_study(directions=spec.directions)
    run = TrialRun(study.ask(), spec)
    with pytest.raises(ValueError, match="needs val_accuracy"):
        run.report(train_loss=1.0, val_loss=1.0, lr=0.1)
    run = TrialRun(study.ask(), spec)
    with pytest.raises(ValueError, match="without reporting any epoch"):
        run.finish()
    lr = run.hyperparameters["lr"]  # the searched lr reached the loop (which builds its own optimizer with it)
    for _ in range(run.epochs):
        run.report(train_loss=1.0, val_loss=1.0, val_accuracy=0.5, lr=lr)
    with pytest.raises(ValueError, match="one too many"):
        run.report(train_loss=1.0, val_loss=1.0, val_accuracy=0.5, lr=0.1)


LOOP_EXAMPLE = re.compile(r"<!-- loop example: (\w+) -->\n```python\n(.*?)```", re.S)
LOOP_STUDY = (
    '[study]\nname = "{name}"\nmethod = "cosine"\nobjectives = ["final_val_accuracy", "train_seconds"]\nn_trials = 2\n'
    '[task]\nloop = "{module}:fit"\n[fixed]\nepochs = 2\nbatch_size = 16\n'
    '[search]\nlr = {{ type = "float", low = 1e-3, high = 0.3, log = true }}\n'
)


@pytest.mark.parametrize("name", ["plain", "lightning", "hf"])
def test_readme_loop_examples_run(name: str, tmp_path: Path) -> None:
    code = dict(LOOP_EXAMPLE.findall((REPO / "README.md").read_text(encoding="utf-8")))[name]
    module = {"plain": "myloop", "lightning": "mylit", "hf": "myhf"}[name]
    (tmp_path / f"{module}.py").write_text(code, encoding="utf-8")
    if name == "plain":
        command = [sys.executable, f"{module}.py"]
        url, study_name, total = f"sqlite:///{tmp_path / 'mine.db'}", "mine", 6
    else:
        if name == "hf":  # an accuracy objective needs compute_metrics; this example reports the loss
            study = LOOP_STUDY.replace('"final_val_accuracy", ', '"final_val_loss", ')
        else:
            study = LOOP_STUDY
        (tmp_path / "s.toml").write_text(study.format(name=name, module=module), encoding="utf-8")
        url, study_name, total = f"sqlite:///{tmp_path / 's.db'}", name, 2
        command = [sys.executable, "-m", "lrpo_study", "optimize", "s.toml", "--storage", url, "--no-progress"]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = optuna.load_study(study_name=study_name, storage=url).get_trials(states=FINISHED)
    assert len(trials) == total and all(t.user_attrs["epochs"] >= 1 and t.user_attrs["curves"]["lr"] for t in trials)


def _loop_study(path: Path, loop: str, *, n_trials: int = 3, epochs: int = 2, task: str = "") -> Path:
    path.write_text(
        f'[study]\nname = "{loop}"\nmethod = "fixed"\nn_trials = {n_trials}\nsampler = "random"\n'
        f'[task]\nloop = "tests.user_loops:{loop}"\n{task}\n[fixed]\nepochs = {epochs}\n'
        '[search]\nlr = { type = "float", low = 0.01, high = 0.2, log = true }\n'
    )
    return path


def _failure_lines(stderr: str) -> list[str]:
    return [line for line in stderr_lines(stderr) if " failed: " in line]


def test_an_exception_in_a_loop_fails_that_trial_alone_and_the_study_goes_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    proc = cli("optimize", str(_loop_study(tmp_path / "s.toml", "raises_in_trial_1")), "--storage", url, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _failure_lines(proc.stderr) == ["lrpo_study: trial 1 failed: RuntimeError: the data server went away"]
    study = optuna.load_study(study_name="raises_in_trial_1", storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    failed = study.trials[1].user_attrs
    assert failed["fail_reason"] == "RuntimeError: the data server went away" and "raises_in_trial_1" in failed["fail_traceback"]


@pytest.mark.parametrize(("loop", "reason"), [
    ("always_raises", "ValueError: broken in trial 1"),
    ("report_typo", "TypeError: TrialRun.report() missing 1 required keyword-only argument: 'train_loss'"),
    ("returns_after_one_epoch", "the loop reported 1 of its 2 epochs and returned"),
])
def test_failing_trials_stop_the_study_after_max_failures_in_one_line(loop: str, reason: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    proc = cli("optimize", str(_loop_study(tmp_path / "s.toml", loop)), "--storage", url, "--no-progress", "--max-failures", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = stderr_lines(proc.stderr)
    assert len(_failure_lines(proc.stderr)) == 2 and all(reason.split(":")[0] in line for line in _failure_lines(proc.stderr))
    assert lines[-1].startswith(f"lrpo_study: error: {loop}: 2 trials failed (--max-failures 2): trials 0, 1; the last: ")
    assert reason in lines[-1]
    study = optuna.load_study(study_name=loop, storage=url)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]  # never COMPLETE with fewer epochs
    assert all(reason in t.user_attrs["fail_reason"] for t in study.trials[1:])


def test_a_loop_that_stops_early_on_purpose_says_so_and_completes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    proc = cli("optimize", str(_loop_study(tmp_path / "s.toml", "stops_early_on_purpose", n_trials=2, epochs=3)),
               "--storage", url, "--no-progress")
    assert proc.returncode == 0 and _failure_lines(proc.stderr) == [], proc.stderr
    for t in optuna.load_study(study_name="stops_early_on_purpose", storage=url).trials:
        assert t.state == TrialState.COMPLETE and t.user_attrs["epochs"] == 1
        assert t.user_attrs["stopped_early"] == "validation loss stopped improving"


def test_a_hanging_loop_fails_its_trial_after_the_trial_timeout_and_the_study_goes_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = _loop_study(tmp_path / "s.toml", "hangs_in_trial_0", n_trials=2)
    proc = run_cli("optimize", str(spec), "--storage", url, "--no-progress", "--trial-timeout", "4", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert _failure_lines(proc.stderr) == ["lrpo_study: trial 0 failed: ran longer than --trial-timeout 4 s"]
    study = optuna.load_study(study_name="hangs_in_trial_0", storage=url)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.trials[0].user_attrs["fail_reason"] == "ran longer than --trial-timeout 4 s"


def test_a_searched_value_that_never_reaches_the_loop_is_refused(tmp_path: Path) -> None:
    # The loop trains with its own optimizer at its own lr and reports it: every trial would be the same run.
    url = f"sqlite:///{tmp_path / 's.db'}"
    proc = cli("optimize", str(_loop_study(tmp_path / "s.toml", "own_lr")), "--storage", url, "--no-progress")
    assert_one_line_error(proc, "searches 'lr'", "never reached the loop and reports its own lr", "make_optimizer")
    # The same loop reading what the study searches is a study.
    proc = cli("optimize", str(_loop_study(tmp_path / "t.toml", "blobs_fit")), "--storage", url, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    lrs = {t.params["lr"] for t in optuna.load_study(study_name="blobs_fit", storage=url).trials}
    assert len(lrs) == 3


def test_a_task_option_the_loop_never_reads_is_refused_after_its_first_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    proc = cli("optimize", str(_loop_study(tmp_path / "s.toml", "reads_hidden", task="hiden = 64")), "--storage", url, "--no-progress")
    assert_one_line_error(proc, "[task] option 'hiden' was never read", "it reads ['hidden']")
    proc = cli("optimize", str(_loop_study(tmp_path / "t.toml", "reads_hidden", task="hidden = 64")), "--storage",
               f"sqlite:///{tmp_path / 't.db'}", "--no-progress")
    assert proc.returncode == 0, proc.stderr
