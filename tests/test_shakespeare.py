"""The shakespeare-char task on the real text: windows, split, cache, nanoGPT's lr rule, bad files."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import optuna
import pytest
import torch

from lrpo_study.schedules import CosineLR
from lrpo_study.study.runner import prepare_study
from lrpo_study.study.spec import load_spec
from lrpo_study.study.trial_run import suggest
from lrpo_study.tasks import load_task, task_options
from lrpo_study.training.cache import TrajectoryCache
from lrpo_study.training.hyperparameters import resolve
from lrpo_study.training.loop import train
from lrpo_study.views import record

from .conftest import DATA_DIR, assert_one_line_error, cli

SMALL = {"block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 16, "epoch_windows": 64, "val_windows": 16}
TEXT = (DATA_DIR / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
VOCAB = sorted(set(TEXT))
STUDIES = Path(__file__).parent.parent / "studies"


def decode(ids: torch.Tensor) -> str:
    return "".join(VOCAB[int(i)] for i in ids)


def test_windows_targets_and_split_follow_nanogpt() -> None:
    task = load_task("shakespeare-char", SMALL, data_dir=str(DATA_DIR))
    assert len(VOCAB) == 65
    (x, y), n = task.train, len(TEXT)
    assert decode(x[0]) == TEXT[:8] and decode(y[0]) == TEXT[1:9]  # targets: the inputs shifted by one
    assert decode(x[12345]) == TEXT[12345:12353] and decode(y[12345]) == TEXT[12346:12354]
    assert len(x) == int(n * 0.9) - 8  # every window of the first 90 %, none crossing into validation
    assert task.samples_per_epoch == 64 and task.has_accuracy
    held_out = TEXT[int(n * 0.9):]
    assert task.test is not None and decode(task.test[0][0]) == held_out[len(held_out) // 2:][:8]
    assert decode(task.val[0][0]) == held_out[:8] and len(task.val[0]) == 16
    nano = load_task("shakespeare-char", {**SMALL, "split": "nanogpt"}, data_dir=str(DATA_DIR))
    assert nano.test is None and decode(nano.val[0][-1]) in held_out[len(held_out) // 2:]  # validation: the whole last 10 %


def test_training_lowers_the_validation_loss_and_a_per_epoch_run_is_the_same_from_the_cache(tmp_path: Path) -> None:
    task = load_task("shakespeare-char", SMALL, data_dir=str(DATA_DIR))
    hp = resolve("fixed", {"epochs": 3, "batch_size": 16, "lr": 3e-3, "optimizer": "adamw", "grad_clip": 1.0, "weight_decay": 0.1})
    scratch = train(task=task, method="fixed", hyperparameters=hp, seed=1, score_test=True)
    assert scratch.curves["val_loss"][-1] < scratch.curves["val_loss"][0] < math.log(65) + 0.5
    cache = TrajectoryCache(tmp_path / "cache")
    train(task=task, method="fixed", hyperparameters={**hp, "epochs": 2}, seed=1, cache=cache)
    branched = train(task=task, method="fixed", hyperparameters=hp, seed=1, cache=cache, score_test=True)
    assert branched.extras["cached_epochs"] == 2
    for name in ("train_loss", "val_loss", "val_accuracy", "lr"):
        assert branched.curves[name] == scratch.curves[name], name
    assert branched.extras["test_loss"] == scratch.extras["test_loss"]


def test_gradient_clipping_changes_the_run() -> None:
    task = load_task("shakespeare-char", SMALL, data_dir=str(DATA_DIR))
    hp = resolve("fixed", {"epochs": 1, "batch_size": 16, "lr": 1e-2, "optimizer": "adamw"})
    free = train(task=task, method="fixed", hyperparameters=hp, seed=2)
    clipped = train(task=task, method="fixed", hyperparameters={**hp, "grad_clip": 1e-3}, seed=2)
    assert free.curves["train_loss"] != clipped.curves["train_loss"]


def nanogpt_get_lr(it: int, *, learning_rate: float, warmup_iters: int, lr_decay_iters: int, min_lr: float) -> float:
    """nanoGPT's train.py, as published."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)


def test_cosine_with_warmup_is_nanogpts_schedule() -> None:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=1e-3)
    sched = CosineLR(opt, total_steps=2000, eta_min=1e-4, warmup_steps=100)
    got = []
    for _ in range(2010):
        got.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    want = [nanogpt_get_lr(i, learning_rate=1e-3, warmup_iters=100, lr_decay_iters=2000, min_lr=1e-4) for i in range(2010)]
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0)


def test_a_missing_or_damaged_text_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(
        cli("run", "--task", "shakespeare-char", "--method", "fixed", "--data-dir", str(empty)),
        "Tiny Shakespeare", "downloading is off", "--data-dir",
    )
    damaged = tmp_path / "damaged" / "tinyshakespeare"
    damaged.mkdir(parents=True)
    (damaged / "input.txt").write_text(TEXT[:-10], encoding="utf-8")
    assert_one_line_error(
        cli("run", "--task", "shakespeare-char", "--method", "fixed", "--data-dir", str(damaged.parent)),
        "is not Tiny Shakespeare's input.txt", "1,115,384 bytes", "md5",
    )
    shutil.copy(DATA_DIR / "tinyshakespeare" / "input.txt", damaged / "input.txt")
    assert_one_line_error(
        cli("run", "--task", "shakespeare-char", "--method", "fixed", "--data-dir", str(damaged.parent),
                "--task-option", "n_embd=30", "--task-option", "n_head=4"),
        "n_embd must be a multiple of n_head",
    )


@pytest.mark.parametrize("method", ["greedylr", "lrpo"])
def test_run_trains_greedylr_and_lrpo_with_adamw(method: str) -> None:
    options = [arg for k, v in SMALL.items() for arg in ("--task-option", f"{k}={v}")]
    proc = cli("run", "--task", "shakespeare-char", "--method", method, "--epochs", "3", "--set", "optimizer=adamw",
                   "--set", "lr=3e-3", "--set", "batch_size=16", *options, "--json")
    assert proc.returncode == 0, proc.stderr


def test_the_curvature_schedule_needs_the_math_attention_kernel() -> None:
    options = [arg for k, v in SMALL.items() for arg in ("--task-option", f"{k}={v}")]
    args = ("run", "--task", "shakespeare-char", "--method", "curvature", "--epochs", "1", "--set", "batch_size=16",
            "--set", "estimate_every=4", *options)
    assert_one_line_error(cli(*args), "second derivative", "--task-option attention=math")
    proc = cli(*args, "--task-option", "attention=math", "--json")
    assert proc.returncode == 0, proc.stderr


def test_the_cosine_study_enqueues_nanogpts_recipe_and_no_other_study_does(tmp_path: Path) -> None:
    # nanoGPT's shakespeare_char CPU command, written out from its README (not from our constants).
    nanogpt = {"optimizer": "adamw", "lr": 1e-3, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1, "grad_clip": 1.0,
               "batch_size": 12, "warmup_steps": 100, "eta_min": 1e-4, "epochs": 10}  # 10 x 200 iterations
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    spec = load_spec(STUDIES / "shakespeare-cosine.toml")
    study = prepare_study(spec, storage)
    trial = study.ask()
    assert trial.user_attrs["reference"] == "nanogpt"
    hp = resolve("cosine", suggest(trial, spec))
    assert {k: hp[k] for k in nanogpt} == nanogpt
    options = task_options(spec.task, spec.task_options)
    assert {k: options[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias")} == {
        "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "dropout": 0.0, "bias": False}

    for name in ("fixed", "greedylr", "lrpo"):
        other = prepare_study(load_spec(STUDIES / f"shakespeare-{name}.toml"), storage)
        assert other.get_trials(deepcopy=False) == []
    smaller = dataclasses.replace(spec, name="small-model", task_options={**spec.task_options, "n_layer": 2})
    assert prepare_study(smaller, storage).get_trials(deepcopy=False) == []


def test_confirm_scores_a_loss_study_by_test_loss_though_the_task_has_accuracy(tmp_path: Path) -> None:
    options = "\n".join(f"{k} = {v}" for k, v in SMALL.items())
    study = tmp_path / "loss.toml"
    study.write_text(
        '[study]\nname = "loss"\nmethod = "cosine"\nobjectives = ["final_val_loss", "train_seconds"]\nn_trials = 2\n'
        f'[task]\nname = "shakespeare-char"\n{options}\n[pruning]\nrule = "none"\n'
        '[fixed]\noptimizer = "adamw"\nbatch_size = 16\nepochs = 2\nwarmup_steps = 0\n'  # the recipe's 100: longer than this run
        '[search]\nlr = { type = "float", low = 1e-3, high = 1e-2, log = true }\n'
    )
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert cli("optimize", str(study), "--storage", url, "--no-progress").returncode == 0
    proc = cli("confirm", "--storage", url, "--seeds", "7", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    stored = optuna.load_study(study_name="loss", storage=url)
    confirmed = record.confirmations(stored.user_attrs)
    assert confirmed and all(c.metric == "test_loss" for c in confirmed.values())
    number, result = next(iter(confirmed.items()))
    hp = record.TrialRecord.of(stored.trials[number]).hyperparameters
    again = train(task=load_task("shakespeare-char", SMALL, data_dir=str(DATA_DIR), seed=7), method="cosine",
                  hyperparameters=hp, seed=7, score_test=True)
    assert result.values == [again.extras["test_loss"]]
    assert 0.0 < again.extras["test_accuracy"] < 1.0  # the task has accuracy: the study's objective decided

    proc = cli("confirm", "--storage", url, "--study", "loss", "--trial", "1", "--seeds", "8", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    after = record.confirmations(optuna.load_study(study_name="loss", storage=url).user_attrs)
    assert after[1].seeds == [8] and all(c.seeds == [7] for n, c in after.items() if n != 1)
    assert_one_line_error(cli("confirm", "--storage", url, "--study", "loss", "--trial", "5"), "no complete trial 5")
    assert_one_line_error(cli("confirm", "--storage", url, "--trial", "1"), "--trial needs exactly one --study")


def test_run_with_no_settings_trains_with_nanogpt_s_recipe() -> None:
    from lrpo_study.tasks.shakespeare import DEFAULTS

    # Half an epoch's default windows (the recipe is the hyperparameters; the task's size is an option): 200 steps
    proc = cli("run", "--task", "shakespeare-char", "--method", "cosine", "--epochs", "2", "--task-option", "epoch_windows=1200",
               "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {k: result["hyperparameters"][k] for k in DEFAULTS if k != "epochs"} == {k: v for k, v in DEFAULTS.items() if k != "epochs"}
    assert result["final_val_loss"] < 2.6, result["curves"]["val_loss"]


def test_a_default_warm_up_longer_than_the_run_is_one_line() -> None:
    args = ["run", "--task", "shakespeare-char", "--method", "cosine", "--epochs", "1"]
    for key, value in SMALL.items():
        args += ["--task-option", f"{key}={value}"]
    assert_one_line_error(cli(*args), "cosine on task 'shakespeare-char'", "warmup_steps=100", "total_steps=6")
