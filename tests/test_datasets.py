"""Tasks fed by a Dataset: per-sample augmentation drawn afresh each epoch and repeated by the seed, and
dict batches that a transformers model turns into its own loss, through the one loop and through studies."""

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

from lrpo_study.training.hyperparameters import resolve
from lrpo_study.training.loop import train

from .conftest import REPO, assert_one_line_error, cli
from .user_task import augmented_squares

HP = resolve("fixed", {"epochs": 2, "batch_size": 64, "lr": 0.1})


def test_augmentation_is_drawn_afresh_each_epoch_and_the_seed_repeats_every_batch() -> None:
    runs = []
    for _ in range(2):
        task = augmented_squares()
        result = train(task=task, method="fixed", hyperparameters=HP, seed=5)
        runs.append((task.train.seen, result.curves))
    (seen, curves), (seen_again, curves_again) = runs
    first, second = seen[-2:]  # what the two epochs drew (checking the task looks at item 0 once more)
    assert not torch.equal(first, second)  # one image, two epochs, two augmentations
    assert all(torch.equal(a, b) for a, b in zip(seen[-2:], seen_again[-2:], strict=True))  # the same seed, the same draws
    assert curves["val_loss"] == curves_again["val_loss"] and curves["train_loss"] == curves_again["train_loss"]
    assert curves["val_accuracy"][-1] > 0.4  # it learns (4 classes)
    workers = [train(task=augmented_squares(num_workers=2), method="fixed", hyperparameters=HP, seed=5).curves["train_loss"]
               for _ in range(2)]
    assert workers[0] == workers[1]  # worker processes are seeded from (seed, epoch) too


def test_a_dataset_study_with_pruning_and_the_cache_is_reproduced_exactly(tmp_path: Path) -> None:
    spec = tmp_path / "aug.toml"
    spec.write_text(
        '[study]\nname = "aug"\nmethod = "fixed"\nobjectives = ["best_val_accuracy", "epochs"]\nn_trials = 6\n'
        'sampler = "random"\n[task]\nname = "tests.user_task:augmented_squares"\nn = 256\n'
        '[pruning]\nrule = "quantile"\nwarmup_epochs = 1\nmin_trials = 2\ncost_tolerance = 1.0\n'  # on accuracy alone: seconds vary
        '[fixed]\nbatch_size = 64\n'
        '[search]\nlr = { type = "categorical", choices = [0.05, 0.2] }\nepochs = { type = "int", low = 2, high = 4 }\n'
    )
    studies, printed = [], []
    for name, flags in (("cached", []), ("uncached", ["--no-cache"])):
        url = f"sqlite:///{tmp_path / f'{name}.db'}"
        proc = cli("optimize", str(spec), "--storage", url, "--no-progress", "--device", "cpu", *flags)
        assert proc.returncode == 0, proc.stderr
        studies.append(optuna.load_study(study_name="aug", storage=url).trials)
        printed.append(proc.stdout)
    cached, uncached = studies
    assert [(t.state, t.values, t.user_attrs["curves"]["val_loss"]) for t in cached] == \
        [(t.state, t.values, t.user_attrs["curves"]["val_loss"]) for t in uncached]
    served, total = (sum(t.user_attrs[k] for t in cached) for k in ("cached_epochs", "epochs"))
    assert served > 0  # trials sharing an lr branched from the cache
    assert f"aug: {served} of {total} epochs came from the trajectory cache" in printed[0]
    assert "trajectory cache" not in printed[1]
    assert not any("test_loss" in t.user_attrs for t in cached)
    proc = cli("confirm", "--storage", f"sqlite:///{tmp_path / 'cached.db'}", "--seeds", "3", "--best", "1", "--device", "cpu",
               "--task", "tests.user_task:augmented_squares")
    assert proc.returncode == 0 and "test_accuracy" in proc.stdout, proc.stderr  # scored on the test Dataset


SMALL_GPT2 = ["--task-option", "n_layer=1", "--task-option", "n_head=2", "--task-option", "n_embd=32",
              "--task-option", "epoch_windows=256", "--task-option", "val_windows=64"]


def test_a_stock_torchvision_dataset_with_int_classes_trains_and_repeats() -> None:
    from .user_task import stock_fashion_mnist

    task = stock_fashion_mnist()
    assert isinstance(task.train[0][1], int)  # torchvision's own items: (Tensor, int)
    hp = resolve("fixed", {"epochs": 2, "batch_size": 64, "lr": 0.1})
    first, again = (train(task=task, method="fixed", hyperparameters=hp, seed=3) for _ in range(2))
    assert first.curves["val_loss"] == again.curves["val_loss"]
    assert first.value("best_val_accuracy") > 0.5  # it learns 10 classes from 1,024 images
    proc = cli("run", "--method", "fixed", "--task", "tests.user_task:stock_fashion_mnist", "--epochs", "1", "--device", "cpu")
    assert proc.returncode == 0 and "best validation accuracy" in proc.stdout, proc.stderr


def test_the_built_in_gpt2_task_trains_on_its_own_loss_from_nanogpt_s_recipe() -> None:
    proc = cli("run", "--task", "shakespeare-gpt2", "--method", "cosine", "--epochs", "2", *SMALL_GPT2,
               "--set", "warmup_steps=10", "--json", "--device", "cpu")
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["hyperparameters"]["optimizer"], result["hyperparameters"]["batch_size"]) == ("adamw", 12)
    losses = result["curves"]["val_loss"]
    assert losses[-1] < losses[0] < 4.2 and 0.0 < result["curves"]["val_accuracy"][-1] < 1.0


def test_the_gpt2_task_without_transformers_names_the_extra() -> None:
    hide = "import sys; sys.modules['transformers'] = None; from lrpo_study.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", hide, "run", "--task", "shakespeare-gpt2", "--method", "fixed"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert_one_line_error(proc, "shakespeare-gpt2", "needs transformers", "lrpo_study[hf]")


def test_dict_batches_train_a_transformers_model_on_its_own_loss(tmp_path: Path) -> None:
    proc = cli("run", "--task", "tests.user_task:tiny_gpt2", "--method", "cosine", "--epochs", "2", "--set", "batch_size=16",
               "--set", "optimizer=adamw", "--set", "lr=3e-3", "--set", "weight_decay=0.0", "--json", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    losses = result["curves"]["val_loss"]
    assert losses[-1] < losses[0] < 4.3  # from about ln(vocabulary) down
    assert 0.0 < result["curves"]["val_accuracy"][-1] < 1.0  # next-token accuracy, ignoring nothing here
    spec = tmp_path / "gpt.toml"
    spec.write_text(
        '[study]\nname = "gpt"\nmethod = "cosine"\nobjectives = ["final_val_loss"]\nn_trials = 4\nsampler = "random"\n'
        '[task]\nname = "tests.user_task:tiny_gpt2"\n[pruning]\nrule = "median"\nwarmup_epochs = 1\nmin_trials = 1\n'
        '[fixed]\noptimizer = "adamw"\nbatch_size = 16\nepochs = 3\n'
        '[search]\nlr = { type = "float", low = 1e-4, high = 1e-2, log = true }\n'
    )
    url = f"sqlite:///{tmp_path / 'gpt.db'}"
    assert cli("optimize", str(spec), "--storage", url, "--no-progress", "--device", "cpu").returncode == 0
    trials = optuna.load_study(study_name="gpt", storage=url).trials
    assert {t.state for t in trials} <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    best = min((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert best.value == best.user_attrs["curves"]["val_loss"][-1] < 4.3
    settings = tmp_path / "best.json"
    assert cli("export", "--storage", url, "--study", "gpt", "--trial", str(best.number), "-o", str(settings)).returncode == 0
    assert trainer_lr_per_epoch(settings) == pytest.approx(best.user_attrs["curves"]["lr"], rel=1e-9)


def trainer_lr_per_epoch(settings: Path) -> list[float]:
    """The exported schedule in the Hugging Face Trainer on the task's own data: each epoch's mean lr."""
    import transformers

    import lrpo_study
    from lrpo_study.integrations.hf import ScheduleCallback

    from .user_task import tiny_gpt2

    task = tiny_gpt2()
    model = task.build_model()
    optimizer = torch.optim.AdamW(model.parameters())
    steps = -(-len(task.train) // 16)
    schedule = lrpo_study.load_schedule(str(settings), optimizer, steps_per_epoch=steps)
    callback = ScheduleCallback(schedule)
    lrs: list[float] = []

    class Record(transformers.TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            lrs.append(optimizer.param_groups[0]["lr"])

    args = transformers.TrainingArguments(output_dir=str(settings.parent / "out"), num_train_epochs=schedule.epochs,
                                          per_device_train_batch_size=16, report_to=[], save_strategy="no", use_cpu=True)
    transformers.Trainer(model=model, args=args, train_dataset=task.train, optimizers=(optimizer, callback.scheduler),
                         callbacks=[callback, Record()]).train()
    return [sum(lrs[e * steps:(e + 1) * steps]) / steps for e in range(schedule.epochs)]


TASK_EXAMPLE = re.compile(r"<!-- task example: (\w+) -->\n```python\n(.*?)```", re.S)


@pytest.mark.parametrize(("name", "module"), [("dataset", "mytasks"), ("dicts", "mylm")])
def test_readme_task_examples_run(name: str, module: str, tmp_path: Path) -> None:
    code = dict(TASK_EXAMPLE.findall((REPO / "README.md").read_text(encoding="utf-8")))[name]
    (tmp_path / f"{module}.py").write_text(code, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "lrpo_study", "run", "--task", f"{module}:make_task", "--method", "cosine",
                           "--epochs", "2", "--json", "--device", "cpu"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["epochs"] == 2 and all(math.isfinite(v) for v in result["curves"]["val_loss"])
