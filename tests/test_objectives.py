"""Objectives that mean something: a counted cost that no machine load moves, and any metric a loop or a task
reports, followed by pruning, the record, export, confirm and the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from .conftest import assert_one_line_error, cli, write_loop_study, write_study, write_task_study

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
EPOCHS_AND_LR = 'lr = { type = "float", low = 0.01, high = 0.1 }\nepochs = { type = "int", low = 1, high = 3 }'


def front(url: str, name: str) -> list[tuple[int, list[float]]]:
    study = optuna.load_study(study_name=name, storage=url)
    return sorted((t.number, t.values) for t in study.best_trials)


def test_a_compute_front_does_not_move_with_machine_load(tmp_path: Path) -> None:
    path = write_study(tmp_path / "load.toml", name="load", n_trials=6, objectives='["best_val_accuracy", "train_flops"]',
                       fixed="batch_size = 128", search='lr = { type = "float", low = 0.01, high = 0.3, log = true }\n'
                       'epochs = { type = "int", low = 1, high = 3 }')
    alone, loaded = f"sqlite:///{tmp_path / 'alone.db'}", f"sqlite:///{tmp_path / 'loaded.db'}"
    assert cli("optimize", str(path), "--storage", alone, "--no-progress", "--no-cache").returncode == 0
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]  # two CPU-bound neighbours
    try:
        proc = cli("optimize", str(path), "--storage", loaded, "--no-progress", "--no-cache")
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert proc.returncode == 0, proc.stderr
    assert front(alone, "load") == front(loaded, "load")  # the same trials, the same FLOPs, the same accuracies
    assert len({values[1] for _, values in front(alone, "load")}) > 1  # the searched epochs make the FLOPs differ
    # The same trials timed: every trial's seconds moved with the load, so a seconds front need not be the same.
    timed = [[t.user_attrs["train_seconds"] for t in optuna.load_study(study_name="load", storage=url).trials]
             for url in (alone, loaded)]
    assert all(a != b for a, b in zip(*timed, strict=True))


@pytest.mark.parametrize(("loop", "objective", "curve"), [
    ("plain_fit", "train_flops", "flops"),
    ("lightning_fit", "train_samples", "samples"),
    ("hf_fit", "train_flops", "flops"),
])
def test_user_loops_and_frameworks_minimize_a_counted_cost(loop: str, objective: str, curve: str, tmp_path: Path) -> None:
    quality = "final_val_loss" if loop == "hf_fit" else "final_val_accuracy"
    batch, optimizer = (32, '\noptimizer = "adamw"') if loop == "hf_fit" else (64, "")
    path = write_loop_study(
        tmp_path / "loop.toml", name="costs", loop=loop, method="cosine", objectives=f'["{quality}", "{objective}"]',
        n_trials=3, fixed=f"batch_size = {batch}{optimizer}",
        search='epochs = { type = "int", low = 1, high = 2 }\nlr = { type = "float", low = 1e-3, high = 1e-1, log = true }',
    )
    url = f"sqlite:///{tmp_path / 'costs.db'}"
    proc = cli("optimize", str(path), "--storage", url, "--no-progress", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    trials = optuna.load_study(study_name="costs", storage=url).get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3
    per_epoch = {v for t in trials for v in t.user_attrs["curves"][curve]}
    assert len(per_epoch) == 1 and per_epoch.pop() > 0  # every epoch costs the same: one count per batch shape
    for t in trials:
        epochs = t.user_attrs["epochs"]
        assert t.values[1] == t.user_attrs[objective] == sum(t.user_attrs["curves"][curve])
        if loop == "lightning_fit":  # 1,024 images
            assert t.values[1] == epochs * 1024
        if loop == "hf_fit":  # dict batches: their tokens too, 999 windows of 32 characters
            assert t.user_attrs["train_tokens"] == epochs * 999 * 32
        assert t.user_attrs["train_flops"] > 0 and t.user_attrs["train_samples"] > 0  # every framework's step is counted


def test_a_loop_s_own_metric_is_the_objective_pruning_export_and_confirm_follow(tmp_path: Path) -> None:
    path = write_loop_study(
        tmp_path / "f1.toml", name="f1", loop="f1_fit", method="cosine", objectives='["max:final_val_f1", "train_flops"]',
        n_trials=6, pruning='rule = "quantile"\nwarmup_epochs = 1\nmin_trials = 2\ncost_tolerance = 1.0',
        fixed="batch_size = 64\nepochs = 3", search='lr = { type = "float", low = 1e-4, high = 1.0, log = true }',
    )
    url = f"sqlite:///{tmp_path / 'f1.db'}"
    proc = cli("optimize", str(path), "--storage", url, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "every trial costs the same" in proc.stderr  # fixed epochs and batches: the warning before it starts
    study = optuna.load_study(study_name="f1", storage=url)
    assert study.metric_names == ["max:final_val_f1", "train_flops"]
    finished = study.get_trials(states=FINISHED)
    for t in finished:
        f1 = t.user_attrs["curves"]["val_f1"]
        assert t.user_attrs["final_val_f1"] == f1[-1] and all(0.0 <= v <= 1.0 for v in f1)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert pruned and all(t.user_attrs["pruned_reason"].startswith("validation f1") for t in pruned)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert all(t.values[0] == t.user_attrs["final_val_f1"] for t in complete)
    best = max(study.best_trials, key=lambda t: t.user_attrs["final_val_f1"])
    out = tmp_path / "best.json"
    assert cli("export", "--storage", url, "--study", "f1", "--best", "final_val_f1", "-o", str(out)).returncode == 0
    assert json.loads(out.read_text())["provenance"]["trial"] == best.number
    proc = cli("confirm", "--storage", url, "--study", "f1", "--trial", str(best.number), "--seeds", "5",
               "--task", "tests.user_loops:f1_fit")
    assert proc.returncode == 0, proc.stderr
    assert "test_f1" in proc.stdout
    confirmed = optuna.load_study(study_name="f1", storage=url).user_attrs[f"confirm:{best.number}"]
    assert confirmed["metric"] == "test_f1" and 0.3 < confirmed["values"][0] <= 1.0
    assert cli("report", "--storage", url, "-o", str(tmp_path / "r.html")).returncode == 0
    assert "final validation f1" in (tmp_path / "r.html").read_text()


def test_a_task_s_own_metric_is_recorded_optimized_and_confirmed_on_test_data(tmp_path: Path) -> None:
    path = write_task_study(tmp_path / "task.toml", name="balanced", task="tests.user_task:imbalanced",
                            objectives='["max:best_val_balanced", "train_flops"]', epochs=3)
    url = f"sqlite:///{tmp_path / 'task.db'}"
    proc = cli("optimize", str(path), "--storage", url, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="balanced", storage=url)
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        curves = t.user_attrs["curves"]
        assert t.values[0] == max(curves["val_balanced"]) == t.user_attrs["best_val_balanced"]
        assert curves["val_balanced"] != curves["val_accuracy"]  # one class is 3x as common: the two differ
    number = study.best_trials[0].number
    proc = cli("confirm", "--storage", url, "--study", "balanced", "--trial", str(number), "--seeds", "7",
               "--task", "tests.user_task:imbalanced")
    assert proc.returncode == 0, proc.stderr
    assert optuna.load_study(study_name="balanced", storage=url).user_attrs[f"confirm:{number}"]["metric"] == "test_balanced"


def test_an_objective_nobody_records_is_one_line_naming_what_is_recorded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    task = write_study(tmp_path / "t.toml", name="bleu", objectives='["max:final_val_bleu", "train_flops"]')
    assert_one_line_error(cli("optimize", str(task), "--storage", url), "val_bleu", "val_accuracy", "train_flops")
    tokens = write_study(tmp_path / "k.toml", name="tokens", objectives='["best_val_accuracy", "train_tokens"]')
    assert_one_line_error(cli("optimize", str(tokens), "--storage", url), "does not record tokens", "train_samples")
    assert not (tmp_path / "x.db").exists()  # a task's objectives are checked before anything is written
    loop = write_loop_study(tmp_path / "loop.toml", name="loopbleu", loop="plain_fit", fixed="batch_size = 256",
                            objectives='["max:final_val_bleu", "train_flops"]', search=EPOCHS_AND_LR)
    assert_one_line_error(cli("optimize", str(loop), "--storage", url), "final_val_bleu", "val_accuracy")
    undirected = write_study(tmp_path / "u.toml", name="u", objectives='["final_val_f1", "train_flops"]')
    assert_one_line_error(cli("optimize", str(undirected), "--storage", url), "max:final_val_f1")


def test_a_declared_step_cost_counts_every_optimizer_step_and_cannot_mix_with_counting(tmp_path: Path) -> None:
    path = write_loop_study(tmp_path / "declared.toml", name="declared", loop="declared_cost_fit", search=EPOCHS_AND_LR,
                            objectives='["best_val_accuracy", "train_samples", "train_flops"]')
    url = f"sqlite:///{tmp_path / 'd.db'}"
    proc = cli("optimize", str(path), "--storage", url, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    for t in optuna.load_study(study_name="declared", storage=url).get_trials(states=(TrialState.COMPLETE,)):
        steps = 8 * t.user_attrs["epochs"]  # 512 samples in batches of 64 per epoch
        assert t.values[1:] == [64.0 * steps, 1000.0 * steps]
    from lrpo_study import TrialRun, parse_spec  # noqa: PLC0415

    spec = parse_spec({"study": {"name": "x", "method": "fixed"}, "task": {"loop": "tests.user_loops:blobs_fit"},
                       "search": {"lr": {"type": "float", "low": 0.01, "high": 0.1}}}, where="test")
    run = TrialRun(optuna.create_study(directions=spec.directions).ask(), spec)
    run.declare_step_cost(samples=8)
    with pytest.raises(ValueError, match="count steps or declare, not both"):
        run.count_step(samples=8)


BATCH = {"batch_size": {"type": "categorical", "choices": [64, 256]}}


@pytest.mark.parametrize(("method", "cost", "searched", "warned"), [
    ("cosine", "train_flops", BATCH, True),  # an epoch's FLOPs are linear in the batch: the same for any batch size
    ("cosine", "train_seconds", BATCH, False),  # the clock does change with the batch size
    ("cosine", "train_flops", {"epochs": {"type": "int", "low": 2, "high": 4}}, False),
    ("curvature", "train_flops", BATCH, False),  # a Hessian-trace estimate every N steps: more steps, more estimates
    ("curvature", "train_flops", {"lam": {"type": "float", "low": 1.0, "high": 10.0}}, True),
])
def test_the_warning_that_every_trial_costs_the_same(method: str, cost: str, searched: dict[str, object], warned: bool) -> None:
    from lrpo_study.study.spec import constant_cost, parse_spec  # noqa: PLC0415

    spec = parse_spec({"study": {"name": "w", "method": method, "objectives": ["best_val_accuracy", cost]},
                       "search": {"lr": {"type": "float", "low": 0.01, "high": 0.1}, **searched}}, where="w.toml")
    warning = constant_cost(spec)
    assert (warning is not None) == warned, warning
    if warning is not None:
        assert warning.startswith("warning: w: every trial costs the same") and cost in warning
