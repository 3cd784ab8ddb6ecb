"""The shared loop: real training on a real Fashion-MNIST subset."""

from __future__ import annotations

import io

import pytest
import torch

from lrpo_study.tasks import Task
from lrpo_study.training.hyperparameters import METHODS, resolve
from lrpo_study.training.loop import train

METHOD_SETTINGS = {
    "fixed": {},
    "cosine": {},
    "onecycle": {},
    "greedylr": {"patience": 0, "factor": 0.7},
    "curvature": {"estimate_every": 2, "lam": 1000.0},
    "lrpo": {"pretrain_epochs": 2, "finetune_epochs": 1, "variant": "predicted"},
    "wsd": {"decay_fraction": 0.4, "warmup_steps": 2},
    "pbt": {"lrs": [0.05, 0.02], "piece_epochs": 2},  # the lr changes at the resumed epoch
}


@pytest.mark.parametrize("method", METHODS)
def test_checkpoint_round_trip_continues_identically(method: str, small_task: Task) -> None:
    hp = resolve(method, {"epochs": 4, "batch_size": 512, **METHOD_SETTINGS[method]})
    saved: dict[int, bytes] = {}

    def keep(state: dict) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        saved[state["epoch"]] = buffer.getvalue()

    full = train(method=method, hyperparameters=hp, task=small_task, seed=5, on_checkpoint=keep)
    state = torch.load(io.BytesIO(saved[2]), weights_only=True)
    resumed = train(method=method, hyperparameters=hp, task=small_task, seed=5, resume=state)
    for name, curve in full.curves.items():
        if name == "seconds":
            continue
        torch.testing.assert_close(torch.tensor(resumed.curves[name]), torch.tensor(curve), msg=name)
    assert len(set(full.curves["lr"])) > 1 or method == "fixed"  # the schedule really moved the lr


def test_training_learns_and_is_seeded(small_task: Task) -> None:
    hp = resolve("fixed", {"epochs": 3})
    a = train(method="fixed", hyperparameters=hp, task=small_task, seed=1)
    b = train(method="fixed", hyperparameters=hp, task=small_task, seed=1)
    c = train(method="fixed", hyperparameters=hp, task=small_task, seed=2)
    assert a.curves["val_loss"] == b.curves["val_loss"]
    assert a.curves["val_loss"] != c.curves["val_loss"]
    assert a.curves["train_loss"][-1] < a.curves["train_loss"][0]
    assert all(0.0 <= acc <= 1.0 for acc in a.curves["val_accuracy"])
    assert a.train_seconds == pytest.approx(sum(a.curves["seconds"]))


def test_hooks_see_every_step_and_epoch(small_task: Task) -> None:
    steps, epochs = [], []
    hp = resolve("cosine", {"epochs": 2, "batch_size": 512})
    train(
        method="cosine", hyperparameters=hp, task=small_task, on_step=[lambda s, loss: steps.append(s)],
        on_epoch=[lambda m: epochs.append(m.epoch)],
    )
    assert steps == list(range(1, 9)) and epochs == [1, 2]


def test_lrpo_records_the_alpha_it_used(small_task: Task) -> None:
    hp = resolve("lrpo", {"epochs": 4})
    result = train(method="lrpo", hyperparameters=hp, task=small_task)
    alpha = result.extras["alpha"]
    assert 0.5 <= alpha <= 2.0
    assert result.curves["lr"][hp["pretrain_epochs"]] == pytest.approx(hp["lr"] * alpha)
    assert result.curves["lr"][-1] == pytest.approx(hp["finetune_lr"])


def test_several_param_groups_keep_their_ratio(small_task: Task) -> None:
    from lrpo_study.schedules import make_schedule
    from lrpo_study.tasks.fashion_mnist import build_model
    from lrpo_study.training.hyperparameters import TRAIN_PARAMS

    model = build_model("mlp")
    params = list(model.parameters())
    opt = torch.optim.SGD([{"params": params[:4], "lr": 0.1}, {"params": params[4:], "lr": 0.01}], lr=0.1)
    for method in METHODS:
        hp = resolve(method, {"epochs": 4, **METHOD_SETTINGS[method]})
        sched = make_schedule(method, opt, hp, total_steps=8, params=params, probe=lambda a: 1.0 / a, ignore=TRAIN_PARAMS)
        seen = []
        for loss in (1.0, 0.8, 0.6, 0.5):  # the plain-loop protocol: no per-method cases
            sched.observe(sum((p**2).sum() for p in params) * 1e3 * loss)  # its curvature changes too
            opt.step()
            sched.batch_end()
            sched.epoch_end(val_loss=loss, train_loss=loss)
            lrs = sched.get_last_lr()
            seen.append(lrs[0])
            assert lrs[0] == pytest.approx(10 * lrs[1]), method
        assert len(set(seen)) > 1 or method == "fixed", method  # the ratio held while the lr moved
        # No reset between methods: every schedule starts from the groups' initial lr, which none rewrites.
