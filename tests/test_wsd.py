"""``wsd`` against transformers' own ``get_wsd_schedule`` (the real function), step by step."""

from __future__ import annotations

import pytest
import torch
from transformers.optimization import get_wsd_schedule

from lrpo_study.schedules import make_schedule, wsd_lr
from lrpo_study.training.hyperparameters import TRAIN_PARAMS, resolve


def groups(optimizer: str) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.AdamW
    return cls([{"params": params[:1], "lr": 0.1}, {"params": params[1:], "lr": 0.02}])


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize(("shape", "warmup", "decay", "floor"), [
    ("linear", 10, 0, 0.0), ("cosine", 0, 25, 0.1), ("1-sqrt", 7, 0, 0.05), ("1-sqrt", 0, 1, 0.0),
])
def test_wsd_equals_transformers_get_wsd_schedule_at_every_step(optimizer: str, shape: str, warmup: int, decay: int, floor: float) -> None:
    total = 120
    hp = resolve("wsd", {"warmup_steps": warmup, "decay_steps": decay, "decay_fraction": 0.3, "decay_shape": shape,
                         "min_lr_ratio": floor, "epochs": 4})
    ours_opt, theirs_opt = groups(optimizer), groups(optimizer)
    ours = make_schedule("wsd", ours_opt, hp, total_steps=total, ignore=TRAIN_PARAMS)
    decay_steps = decay or round(0.3 * total)
    theirs = get_wsd_schedule(theirs_opt, num_warmup_steps=warmup, num_decay_steps=decay_steps, num_training_steps=total,
                              decay_type=shape, min_lr_ratio=floor)
    ours_lrs, theirs_lrs = [], []
    for _ in range(total + 3):  # and past the end: the floor
        ours_lrs.append(ours.get_last_lr())
        theirs_lrs.append(theirs.get_last_lr())
        ours_opt.step()
        theirs_opt.step()
        ours.step()
        theirs.step()
    assert torch.allclose(torch.tensor(ours_lrs, dtype=torch.float64), torch.tensor(theirs_lrs, dtype=torch.float64), rtol=1e-12, atol=0)
    stable = [lrs[0] for lrs in ours_lrs[warmup:total - decay_steps]]
    assert stable and all(lr == 0.1 for lr in stable)  # the trunk: the peak, unchanged, until the decay starts
    expected = [wsd_lr(s, base_lr=0.02, total_steps=total, warmup_steps=warmup, decay_steps=decay_steps, decay_shape=shape,
                       min_lr_ratio=floor) for s in range(total + 3)]
    assert [lrs[1] for lrs in ours_lrs] == pytest.approx(expected, rel=1e-12)


def test_a_warm_up_and_decay_longer_than_the_run_is_refused() -> None:
    hp = resolve("wsd", {"warmup_steps": 90, "decay_fraction": 0.5})
    with pytest.raises(ValueError, match="warm-up and decay must fit the run"):
        make_schedule("wsd", groups("sgd"), hp, total_steps=100, ignore=TRAIN_PARAMS)


def test_export_for_transformers_gives_the_trainer_the_trial_s_lr_curve(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    import optuna
    import transformers

    from lrpo_study.cli import main

    from .conftest import write_task_study

    spec = write_task_study(tmp_path / "w.toml", name="w", n_trials=1, epochs=4)
    spec.write_text(spec.read_text().replace('method = "fixed"', 'method = "wsd"') + 'warmup_steps = { type = "int", low = 3, high = 3 }\n'
                    'decay_shape = { type = "categorical", choices = ["1-sqrt"] }\n')
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert main(["optimize", str(spec), "--storage", url, "--no-progress", "--device", "cpu"]) == 0
    assert main(["export", "--storage", url, "--study", "w", "--trial", "0", "--for", "transformers", "-o", str(tmp_path / "a.json")]) == 0
    capsys.readouterr()
    trial = optuna.load_study(study_name="w", storage=url).trials[0]
    arguments = json.loads((tmp_path / "a.json").read_text())
    assert arguments["lr_scheduler_type"] == "warmup_stable_decay" and arguments["warmup_steps"] == 3
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True, **arguments)
    steps, epochs = trial.user_attrs["steps_per_epoch"], trial.user_attrs["hyperparameters"]["epochs"]
    trainer = transformers.Trainer(model=torch.nn.Linear(8, 4), args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=epochs * steps)
    lrs = []
    for _ in range(epochs * steps):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    per_epoch = [sum(lrs[e * steps:(e + 1) * steps]) / steps for e in range(epochs)]
    assert per_epoch == pytest.approx(trial.user_attrs["curves"]["lr"], rel=1e-9)
