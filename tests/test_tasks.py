"""User tasks (``module:factory``) and optimizers as study choices, through optimize, export and run."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from lrpo_study import Task, load_task
from lrpo_study.errors import UserError
from lrpo_study.tasks import data_fingerprint
from lrpo_study.training.hyperparameters import resolve
from lrpo_study.training.loop import train

from .conftest import cli, write_task_study

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
CLASSIFICATION = '[task]\nname = "tests.user_task:classification"\nn = 640\nseed = 3\n'


def study_file(path: Path, *, name: str, body: str, task: str = CLASSIFICATION) -> Path:
    path.write_text(f'[study]\nname = "{name}"\n{body}\n{task}')
    return path


def optimize(*args: str) -> None:
    proc = cli("optimize", *args, "--no-progress", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr


def finished(name: str, url: str) -> list[optuna.trial.FrozenTrial]:
    return sorted(optuna.load_study(study_name=name, storage=url).get_trials(states=FINISHED), key=lambda t: t.number)


def test_task_checks_its_fields() -> None:
    x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="same non-empty leading"):
        Task(build_model=lambda: torch.nn.Linear(2, 2), train=(x, y[:3]), val=(x, y))
    with pytest.raises(TypeError, match="Task.val must be a pair"):
        Task(build_model=lambda: torch.nn.Linear(2, 2), train=(x, y), val=[x, y])  # type: ignore[arg-type]
    a = Task(build_model=lambda: torch.nn.Linear(2, 2), train=(x, y), val=(x, y))
    assert a.fingerprint == data_fingerprint((x, y), (x, y), None)
    assert a.fingerprint != Task(build_model=lambda: torch.nn.Linear(2, 2), train=(x + 1, y), val=(x, y)).fingerprint


def test_fashion_mnist_task_gives_todays_numbers(small_split, small_task) -> None:  # type: ignore[no-untyped-def]
    """The built-in task carries exactly the split load_split carves (so every number stays as it was)."""
    assert torch.equal(small_task.train[0], small_split.train_x) and torch.equal(small_task.val[1], small_split.val_y)
    assert small_task.test is not None and torch.equal(small_task.test[0], small_split.test_x)
    assert small_task.options == {"model": "mlp", "split": "holdout", "train_size": 2048, "val_size": 512, "augment": False,
                                  "num_workers": 0}
    with pytest.raises(UserError, match="unknown task 'fashion_mnist'"):
        load_task("fashion_mnist")


def test_user_task_through_optimize_export_and_run(tmp_path: Path) -> None:
    body = (
        'method = "fixed"\nobjectives = ["best_val_accuracy", "epochs"]\nn_trials = 8\n'
        '[pruning]\nrule = "quantile"\nwarmup_epochs = 1\nmin_trials = 2\ncost_tolerance = 1.0\n'
        '[fixed]\nbatch_size = 64\n'
        '[search]\nlr = { type = "categorical", choices = [0.02, 0.1] }\nepochs = { type = "int", low = 2, high = 6 }\n'
    )
    cached_url = f"sqlite:///{tmp_path / 'cached.db'}"
    optimize(str(study_file(tmp_path / "a.toml", name="user", body=body)), "--storage", cached_url)
    scratch_url = f"sqlite:///{tmp_path / 'scratch.db'}"
    optimize(str(study_file(tmp_path / "b.toml", name="user", body=body)), "--storage", scratch_url, "--no-cache")

    cached, scratch = finished("user", cached_url), finished("user", scratch_url)
    assert len(cached) == len(scratch) == 8
    assert sum(t.user_attrs["cached_epochs"] for t in cached) > 0  # the cache really served epochs
    assert any(t.state == TrialState.PRUNED for t in cached)  # and pruning really decided
    for a, b in zip(cached, scratch, strict=True):
        assert (a.state, a.params, a.values) == (b.state, b.params, b.values)
        assert a.user_attrs["curves"]["val_loss"] == b.user_attrs["curves"]["val_loss"]
    first = cached[0]
    assert first.user_attrs["task"] == "tests.user_task:classification"
    assert first.user_attrs["task_options"] == {"n": 640, "seed": 3}

    complete = next(t for t in cached if t.state == TrialState.COMPLETE)
    settings = tmp_path / "settings.json"
    proc = cli("export", "--storage", cached_url, "--study", "user", "--trial", str(complete.number), "-o", str(settings))
    assert proc.returncode == 0, proc.stderr
    exported = json.loads(settings.read_text())
    assert exported["provenance"]["task"] == "tests.user_task:classification"
    assert exported["provenance"]["task_options"] == {"n": 640, "seed": 3}
    assert exported["hyperparameters"]["optimizer"] == "sgd" and "beta1" not in exported["hyperparameters"]

    recorded = complete.user_attrs["curves"]
    # The settings replay the workload they were tuned on, task and options, with nothing to add: the same run.
    for flags in ([], ["--task", "tests.user_task:classification", "--task-option", "n=640", "--task-option", "seed=3"]):
        proc = cli("run", "--settings", str(settings), *flags, "--json", "--device", "cpu")
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        again = json.loads(proc.stdout)
        assert again["task"] == "blobs"
        for name in ("train_loss", "val_loss", "val_accuracy", "lr"):
            assert again["curves"][name] == recorded[name], name
    # Another workload only when asked for, and then said in one line.
    proc = cli("run", "--settings", str(settings), "--task-option", "n=320", "--json", "--device", "cpu")
    assert proc.returncode == 0 and proc.stderr.strip() == "run: not the workload these settings were tuned on: n=320 (tuned with 640)"
    proc = cli("run", "--settings", str(settings), "--task", "fashion-mnist", "--train-size", "256", "--val-size", "128",
               "--epochs", "1", "--device", "cpu")
    assert proc.returncode == 0 and proc.stderr.strip().splitlines() == [
        "run: not the workload these settings were tuned on: task 'fashion-mnist' (tuned on 'tests.user_task:classification')"]


def test_task_without_accuracy_runs_a_single_objective_loss_study_with_an_optuna_pruner(tmp_path: Path) -> None:
    body = (
        'method = "greedylr"\nobjectives = ["final_val_loss"]\nn_trials = 6\n'
        '[pruning]\nrule = "median"\nwarmup_epochs = 1\nmin_trials = 2\n'
        '[fixed]\nbatch_size = 64\nepochs = 5\nmin_lr = 1e-4\n'
        '[search]\nlr = { type = "float", low = 0.001, high = 0.3, log = true }\n'
    )
    url = f"sqlite:///{tmp_path / 'loss.db'}"
    optimize(str(study_file(tmp_path / "loss.toml", name="loss", body=body, task='[task]\nname = "tests.user_task:regression"\n')),
             "--storage", url)
    trials = finished("loss", url)
    assert len(trials) == 6
    for t in trials:
        assert "val_accuracy" not in t.user_attrs["curves"] and "best_val_accuracy" not in t.user_attrs
        assert t.intermediate_values  # reported every epoch for the pruner
        if t.state == TrialState.COMPLETE:
            assert t.values[0] == t.user_attrs["curves"]["val_loss"][-1]
    best = optuna.load_study(study_name="loss", storage=url).best_trial
    assert best.values[0] < 0.5  # the linear model learned the target (noise variance 0.01)
    proc = cli("confirm", "--storage", url, "--study", "loss", "--device", "cpu", "--task", "tests.user_task:regression")
    assert proc.returncode == 2 and "has no test data" in proc.stderr


def test_optimizer_is_a_searchable_choice_with_conditional_hyperparameters(tmp_path: Path) -> None:
    body = (
        'method = "cosine"\nobjectives = ["best_val_accuracy", "epochs"]\nn_trials = 6\nsampler = "random"\n'
        '[fixed]\nbatch_size = 64\nepochs = 2\n'
        '[search]\noptimizer = { type = "categorical", choices = ["sgd", "adamw"] }\n'
        'momentum = { type = "float", low = 0.5, high = 0.95, when = { optimizer = "sgd" } }\n'
        'beta1 = { type = "float", low = 0.8, high = 0.95, when = { optimizer = "adamw" } }\n'
        'beta2 = { type = "float", low = 0.95, high = 0.999, when = { optimizer = "adamw" } }\n'
        'lr = { type = "float", low = 0.001, high = 0.1, log = true }\n'
    )
    url = f"sqlite:///{tmp_path / 'opt.db'}"
    optimize(str(study_file(tmp_path / "opt.toml", name="opt", body=body)), "--storage", url)
    trials = finished("opt", url)
    kinds = {t.user_attrs["hyperparameters"]["optimizer"] for t in trials}
    assert kinds == {"sgd", "adamw"}, kinds  # random sampler, seed 0: both drawn
    for t in trials:
        hp = t.user_attrs["hyperparameters"]
        if hp["optimizer"] == "adamw":
            assert hp["beta1"] == t.params["beta1"] and "momentum" not in hp and "nesterov" not in hp
        else:
            assert hp["momentum"] == t.params["momentum"] and "beta1" not in hp
    adamw = next(t for t in trials if t.params["optimizer"] == "adamw")
    out = tmp_path / "adamw.json"
    assert cli("export", "--storage", url, "--study", "opt", "--trial", str(adamw.number), "-o", str(out)).returncode == 0
    assert json.loads(out.read_text())["hyperparameters"]["optimizer"] == "adamw"


def test_adamw_changes_the_trajectory_and_is_what_the_loop_builds() -> None:
    task = load_task("tests.user_task:classification", {"n": 256})
    sgd = train(task=task, method="fixed", hyperparameters=resolve("fixed", {"epochs": 2, "batch_size": 64, "lr": 0.01}))
    adamw = train(task=task, method="fixed", hyperparameters=resolve(
        "fixed", {"epochs": 2, "batch_size": 64, "lr": 0.01, "optimizer": "adamw", "beta2": 0.99}))
    assert sgd.curves["val_loss"] != adamw.curves["val_loss"]
    assert adamw.hyperparameters["beta2"] == 0.99 and "momentum" not in adamw.hyperparameters
    with pytest.raises(ValueError, match="momentum applies to optimizer 'sgd' only"):
        resolve("fixed", {"optimizer": "adamw", "momentum": 0.5})


def test_a_task_s_defaults_are_what_runs_and_studies_start_from(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lrpo_study.cli import main

    from .user_task import RECIPE

    assert main(["run", "--task", "tests.user_task:with_recipe", "--method", "fixed", "--json", "--device", "cpu"]) == 0
    used = json.loads(capsys.readouterr().out)["hyperparameters"]
    assert {k: used[k] for k in RECIPE} == RECIPE  # recorded as used
    assert main(["run", "--task", "tests.user_task:with_recipe", "--method", "fixed", "--set", "optimizer=sgd",
                 "--set", "batch_size=64", "--json", "--device", "cpu"]) == 0
    used = json.loads(capsys.readouterr().out)["hyperparameters"]
    assert (used["optimizer"], used["batch_size"], used["lr"], "beta2" in used) == ("sgd", 64, RECIPE["lr"], False)
    spec = write_task_study(tmp_path / "r.toml", name="recipe", task="tests.user_task:with_recipe", n_trials=2)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["optimize", str(spec), "--storage", url, "--no-progress", "--device", "cpu"]) == 0
    for trial in optuna.load_study(study_name="recipe", storage=url).trials:
        hp = trial.user_attrs["hyperparameters"]  # the study's [fixed] (epochs, batch size) and [search] (lr) win
        assert (hp["optimizer"], hp["beta2"], hp["batch_size"], hp["epochs"]) == ("adamw", 0.95, 64, 2)
        assert hp["lr"] == trial.params["lr"] != RECIPE["lr"]
    capsys.readouterr()
