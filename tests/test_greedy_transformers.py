"""Our GreedyLR against the authors' implementation in transformers, step by step, on seeded losses."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import transformers.optimization as transformers_optimization

from lrpo_study.schedules import GreedyLR

NEVER = 2**31 - 1  # transformers resets on the first decrease at min_lr when reset_start is 0; ours never does

CASES: dict[str, dict[str, Any]] = {
    "factor-patience": {"factor": 0.5, "patience": 0},
    "threshold-rel": {"factor": 0.9, "patience": 3, "threshold": 1e-2, "threshold_mode": "rel"},
    "threshold-abs-cooldown": {"factor": 0.8, "patience": 2, "threshold": 0.01, "cooldown": 3},
    "warmup": {"factor": 0.7, "patience": 1, "warmup": 4},
    "bounds-cooldown-warmup": {"factor": 0.6, "patience": 1, "cooldown": 2, "warmup": 2, "min_lr": 0.01, "max_lr": 0.15},
    "smoothing": {"factor": 0.9, "patience": 2, "smooth": True, "window": 5},
    "reset": {"factor": 0.5, "patience": 0, "min_lr": 0.01, "reset_start": 3},
    "everything": {"factor": 0.5, "patience": 1, "min_lr": 0.02, "max_lr": 0.2, "reset_start": 2, "cooldown": 1,
                   "warmup": 1, "smooth": True, "window": 3, "threshold_mode": "rel", "threshold": 1e-3},
}


def losses(seed: int, n: int = 400) -> list[float]:
    """Segments that fall, stall and rise, with noise: every branch of the rule gets taken."""
    gen = torch.Generator().manual_seed(seed)
    value, out = 2.0, []
    while len(out) < n:
        slope = [-0.05, 0.0, 0.03][int(torch.randint(0, 3, (1,), generator=gen))]
        for _ in range(int(torch.randint(3, 25, (1,), generator=gen))):
            value = max(0.05, value + slope + 0.01 * float(torch.randn(1, generator=gen)))
            out.append(value)
    return out[:n]


def optimizer() -> torch.optim.SGD:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in (0.1, 0.05)]
    return torch.optim.SGD(groups, lr=0.1)


def theirs_kwargs(case: dict[str, Any]) -> dict[str, Any]:
    kwargs = {"min_lr": 1e-5, **case}  # our default min_lr; theirs is 1e-3
    if "window" in kwargs:
        kwargs["window_size"] = kwargs.pop("window")
    kwargs["reset_start"] = kwargs.get("reset_start") or NEVER
    return kwargs


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lr_after_every_step_equals_transformers_greedylr(name: str, seed: int) -> None:
    case = CASES[name]
    ours_opt, theirs_opt = optimizer(), optimizer()
    ours = GreedyLR(ours_opt, interval="step", **case)
    theirs = transformers_optimization.GreedyLR(theirs_opt, **theirs_kwargs(case))
    got, want = [], []
    for loss in losses(seed):
        ours.step(loss)
        theirs.step(loss)
        got.append([g["lr"] for g in ours_opt.param_groups])
        want.append([g["lr"] for g in theirs_opt.param_groups])
        assert ours.get_last_lr() == got[-1]
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0)
    first = torch.tensor(got, dtype=torch.float64)[:, 0]
    assert (first.diff() > 0).any() and (first.diff() < 0).any(), "the sequence must move the lr both ways"
    if "min_lr" in case and case.get("reset_start", 0) == 0:
        assert float(first.min()) == pytest.approx(case["min_lr"]) and float(first.max()) == pytest.approx(case["max_lr"])
    if case.get("reset_start"):
        resets = [i for i in range(1, len(got)) if got[i][0] == 0.1 and got[i - 1][0] <= case["min_lr"]]
        assert resets, "the countdown at min_lr must have reset the schedule"


def test_state_dict_round_trip_continues_identically() -> None:
    case = CASES["everything"]
    seq = losses(5)
    opt = optimizer()
    sched = GreedyLR(opt, interval="step", **case)
    for loss in seq[:150]:
        sched.step(loss)
    state = sched.state_dict()
    opt2 = optimizer()
    resumed = GreedyLR(opt2, interval="step", **case)
    resumed.load_state_dict(state)
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    for loss in seq[150:]:
        sched.step(loss)
        resumed.step(loss)
        assert resumed.get_last_lr() == sched.get_last_lr()
