"""Each schedule's lr sequence against its pure reference, and GreedyLR/Hutchinson by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lrpo_study.schedules import (
    LRPO,
    CosineLR,
    CurvatureLR,
    FixedLR,
    GreedyLR,
    OneCycleLR,
    cosine_lr,
    curvature_factor,
    faithful_alpha,
    hutchinson_trace,
    lrpo_lr,
    onecycle_lr,
)


def sgd(lr: float = 0.1, groups: int = 1) -> torch.optim.SGD:
    params = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr * (i + 1)} for i in range(groups)]
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def lrs_per_step(schedule, opt, steps: int) -> list[list[float]]:
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        schedule.step()
    return out


def test_fixed_is_constant() -> None:
    opt = sgd(0.05)
    assert lrs_per_step(FixedLR(opt), opt, 5) == [[0.05]] * 5


@pytest.mark.parametrize("groups", [1, 2])
def test_cosine_matches_pure_function(groups: int) -> None:
    opt = sgd(0.1, groups)
    got = torch.tensor(lrs_per_step(CosineLR(opt, total_steps=50, eta_min=1e-3), opt, 50))
    for g in range(groups):
        ref = [cosine_lr(s, base_lr=0.1 * (g + 1), total_steps=50, eta_min=1e-3) for s in range(50)]
        torch.testing.assert_close(got[:, g], torch.tensor(ref), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("groups", [1, 2])
def test_onecycle_matches_pure_function(groups: int) -> None:
    opt = sgd(0.1, groups)
    got = torch.tensor(lrs_per_step(OneCycleLR(opt, total_steps=40, pct_start=0.25), opt, 40))
    for g in range(groups):
        ref = [
            onecycle_lr(s, max_lr=0.1 * (g + 1), total_steps=40, pct_start=0.25, div_factor=25.0, final_div_factor=1e4)
            for s in range(40)
        ]
        torch.testing.assert_close(got[:, g], torch.tensor(ref), rtol=1e-6, atol=1e-9)


def test_faithful_alpha_rule() -> None:
    # r = (0.40 - 0.37) / 3 = 0.01 -> alpha = 1.1 ; rising loss -> 0.8 ; steep drop -> capped at 2
    assert faithful_alpha([0.5, 0.45, 0.40, 0.38, 0.37]) == pytest.approx(1.1)
    assert faithful_alpha([0.3, 0.3, 0.31]) == 0.8
    assert faithful_alpha([2.0, 1.0, 0.1]) == 2.0


@pytest.mark.parametrize("groups", [1, 2])
def test_lrpo_matches_pure_function(groups: int) -> None:
    opt = sgd(0.05, groups)
    sched = LRPO(opt, pretrain_epochs=4, finetune_epochs=3, finetune_lr=1e-3)
    losses = [1.0, 0.8, 0.7, 0.64, 0.6, 0.59, 0.58, 0.57]
    got = []
    for loss in losses[: sched.total_epochs]:
        got.append([g["lr"] for g in opt.param_groups])
        sched.step(loss)
    alpha = faithful_alpha(losses[:4])
    assert sched.alpha == pytest.approx(alpha)
    for g in range(groups):
        scale = g + 1
        ref = [lrpo_lr(e, base_lr=0.05 * scale, alpha=alpha, pretrain_epochs=4, finetune_lr=1e-3 * scale) for e in range(8)]
        torch.testing.assert_close(torch.tensor(got)[:, g], torch.tensor(ref))


def test_lrpo_manual_and_predicted_need_their_inputs() -> None:
    with pytest.raises(ValueError, match="alpha"):
        LRPO(sgd(), variant="manual")
    with pytest.raises(ValueError, match="alpha must be in"):
        LRPO(sgd(), variant="manual", alpha=3.0)
    with pytest.raises(ValueError, match="probe"):
        LRPO(sgd(), variant="predicted")


def test_lrpo_predicted_picks_the_alpha_its_probes_favour() -> None:
    # A run whose loss after a probe is lowest near alpha = 1.4: the predictor must find that region.
    calls = []

    def probe(alpha: float) -> float:
        calls.append(alpha)
        return (alpha - 1.4) ** 2 + 0.3

    opt = sgd(0.05)
    sched = LRPO(opt, pretrain_epochs=2, finetune_epochs=1, variant="predicted", probe=probe, probe_candidates=7)
    sched.step(1.0)
    sched.step(0.9)
    assert len(calls) == 7
    assert sched.alpha == pytest.approx(1.4, abs=0.1)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * sched.alpha)


def test_greedylr_scripted_losses() -> None:
    opt = sgd(0.1)
    sched = GreedyLR(opt, factor=0.5, patience=1, min_lr=0.01, max_lr=0.5, interval="step")
    # loss:      improve improve(2 > patience: lr/F)  improve  worse  worse(2: lr*F)  worse  worse(lr*F)
    losses = [1.0, 0.9, 0.8, 0.85, 0.86, 0.9, 0.95, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    expected_after = [0.1, 0.2, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0.1, 0.1, 0.2, 0.2, 0.4]
    got = []
    for loss in losses:
        sched.step(loss)
        got.append(opt.param_groups[0]["lr"])
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected_after))
    # bounds: keep improving and the lr stops at max_lr
    for i in range(20):
        sched.step(0.1 - i * 1e-3)
    assert opt.param_groups[0]["lr"] == 0.5


def test_greedylr_cooldown_smoothing_and_reset() -> None:
    opt = sgd(0.1)
    sched = GreedyLR(opt, factor=0.5, patience=0, cooldown=2, min_lr=1e-3, interval="step")
    for loss in [1.0, 1.1, 1.2, 1.3, 1.4]:
        sched.step(loss)
    # first step improves (lr/F = 0.2), then bad -> 0.1, two cooldown steps ignored, bad -> 0.05
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    opt = sgd(0.1)
    smooth = GreedyLR(opt, factor=0.5, patience=5, smooth=True, window=2, reset_start=3, interval="step")
    smooth.step(1.0)
    smooth.step(3.0)
    assert list(smooth.recent) == [1.0, 3.0] and smooth.best == 1.0
    with pytest.raises(ValueError, match="factor must be in"):
        GreedyLR(sgd(), factor=1.0)


def test_hutchinson_trace_of_quadratic_within_5_percent() -> None:
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(30, 30, generator=gen)
    hessian = m @ m.T / 30 + torch.eye(30)
    x = torch.nn.Parameter(torch.randn(30, generator=gen))
    exact = float(torch.trace(hessian))
    estimates = [
        hutchinson_trace(0.5 * x @ hessian @ x, [x], generator=gen) for _ in range(200)
    ]
    assert abs(sum(estimates) / len(estimates) - exact) / exact < 0.05
    assert torch.tensor(estimates).std() > 0  # really random probes, not the exact trace


def test_curvature_sets_lr_from_the_trace_of_a_known_hessian() -> None:
    # For a diagonal Hessian every Rademacher probe gives vᵀHv = tr(H) exactly: here 55 over 10 parameters.
    gen = torch.Generator().manual_seed(1)
    x = torch.nn.Parameter(torch.randn(10, generator=gen))
    opt = torch.optim.SGD([x], lr=0.2)
    sched = CurvatureLR(opt, params=[x], lam=0.5, estimate_every=2, beta=0.5, clamp=0.25)
    hessian = torch.diag(torch.arange(1.0, 11.0))
    lrs = []
    for step in range(4):
        sched.observe(0.5 * x @ hessian @ x * (1.0 if step < 2 else 3.0))  # the Hessian triples at step 2
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    first = 0.2 / math.sqrt(1 + 0.5 * 5.5)
    ema = 0.5 * 5.5 + 0.5 * 16.5  # estimated again at step 2 only (estimate_every=2)
    assert lrs == pytest.approx([first, first, 0.2 / math.sqrt(1 + 0.5 * ema), 0.2 / math.sqrt(1 + 0.5 * ema)])
    assert sched.get_last_lr() == pytest.approx([lrs[-1]])
    assert curvature_factor(-100.0, lam=1.0, clamp=0.25) == pytest.approx(2.0)
    assert math.isclose(curvature_factor(0.0, lam=3.0, clamp=0.25), 1.0)
    with pytest.raises(ValueError, match="params"):
        CurvatureLR(opt)


def test_curvature_stepped_without_its_loss_graph_raises() -> None:
    x = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([x], lr=0.1)
    sched = CurvatureLR(opt, params=[x], estimate_every=1)
    opt.step()
    with pytest.raises(RuntimeError, match=r"observe\(loss\)"):
        sched.step()


def test_make_schedule_refuses_a_key_no_schedule_reads() -> None:
    from lrpo_study.schedules import make_schedule

    with pytest.raises(ValueError, match="unknown greedylr hyperparameter 'pateince'"):
        make_schedule("greedylr", sgd(), {"pateince": 3})
    assert make_schedule("greedylr", sgd(), {"patience": 3, "epochs": 4}).patience == 3


def test_load_state_dict_loads_state_not_settings() -> None:
    source = GreedyLR(sgd(), factor=0.5, patience=0, interval="step")
    for loss in [1.0, 0.9, 0.8]:
        source.step(loss)
    target_opt = sgd()
    target = GreedyLR(target_opt, factor=0.9, patience=2, interval="epoch")
    target.load_state_dict(source.state_dict())
    assert (target.interval, target.monitor, target.factor, target.patience) == ("epoch", "val_loss", 0.9, 2)
    assert target.best == source.best and target.last_epoch == 3
    assert target_opt.param_groups[0]["lr"] == pytest.approx(0.1 / 0.5**3)
    lrpo = LRPO(sgd(0.05), pretrain_epochs=1, finetune_epochs=1)
    lrpo.step(1.0)
    resumed = LRPO(sgd(0.05), pretrain_epochs=1, finetune_epochs=1)
    resumed.load_state_dict(lrpo.state_dict())
    assert resumed.alpha == lrpo.alpha == 0.8  # α is decided while running: it is state


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_onecycle_equals_torchs_and_leaves_initial_lr_alone(optimizer: str) -> None:
    def make() -> torch.optim.Optimizer:
        groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in (0.1, 0.02)]
        return torch.optim.SGD(groups, lr=0.1, momentum=0.9) if optimizer == "sgd" else torch.optim.AdamW(groups, lr=0.1)

    ours_opt, torch_opt = make(), make()
    ours = OneCycleLR(ours_opt, total_steps=30, pct_start=0.25, div_factor=10.0, final_div_factor=100.0)
    theirs = torch.optim.lr_scheduler.OneCycleLR(
        torch_opt, max_lr=[0.1, 0.02], total_steps=30, pct_start=0.25, div_factor=10.0, final_div_factor=100.0,
    )
    def state(opt: torch.optim.Optimizer) -> list[float]:
        return [v for g in opt.param_groups for v in (g["lr"], g["momentum"] if "momentum" in g else g["betas"][0])]

    for _ in range(29):
        assert state(ours_opt) == pytest.approx(state(torch_opt), rel=1e-12)
        for opt, sched in ((ours_opt, ours), (torch_opt, theirs)):
            opt.step()
            sched.step()
    assert [g["initial_lr"] for g in ours_opt.param_groups] == [0.1, 0.02]  # torch's would now say [0.01, 0.002]
    assert CosineLR(ours_opt, total_steps=5).get_last_lr() == pytest.approx([0.1, 0.02])
