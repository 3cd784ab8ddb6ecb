"""Compute counted, not timed: a trial's ``train_flops`` is torch's ``FlopCounterMode`` count of one real training
step of its model and batch shape, times its schedule's steps, plus what its method adds; ``train_samples`` and
``train_tokens`` count what it trained on. Each expected count below is measured here from its parts: one step
built by hand (forward, backward, optimizer step), the curvature schedule's Hessian-trace estimate, LRPO's
probes and predictor fit."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset, default_collate
from torch.utils.flop_counter import FlopCounterMode

from lrpo_study import Task
from lrpo_study.schedules._predictor import fit_predictor
from lrpo_study.schedules.curvature import hutchinson_trace
from lrpo_study.tasks import load_task
from lrpo_study.training.hyperparameters import resolve, with_defaults
from lrpo_study.training.loop import train
from lrpo_study.training.optimizers import build_optimizer

from . import user_task


def counted(work: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as mode:
        work()
    return int(mode.get_total_flops())


def first_batch(task: Task, size: int) -> Any:
    """A training batch of ``size`` samples, shaped as the loop's."""
    if isinstance(task.train, tuple):
        x, y = task.train
        return x[:size], y[:size]
    return default_collate([task.train[i] for i in range(size)])


def step_flops(task: Task, hp: dict[str, Any], size: int, *, extra: Callable[[torch.Tensor, list[torch.Tensor]], object] | None = None) -> int:
    """FlopCounterMode's count of one training step on a fresh model, built by hand: forward, loss, (the
    method's ``extra`` work on the loss graph), backward, optimizer step."""
    torch.manual_seed(0)
    model = task.build_model()
    optimizer = build_optimizer(model.parameters(), hp, matrices_only=task.decay_matrices_only)
    params = [p for p in model.parameters() if p.requires_grad]
    batch = first_batch(task, size)

    def step() -> None:
        model.train()
        loss = task.batch_loss(model, batch)
        if extra is not None:
            extra(loss, params)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return counted(step)


def step_sizes(task: Task, batch_size: int) -> list[int]:
    """The batch sizes of one epoch's steps, in order (the last may be short)."""
    per_epoch = task.samples_per_epoch
    return [min(batch_size, per_epoch - start) for start in range(0, per_epoch, batch_size)]


def run(task: Task, method: str, values: dict[str, Any]) -> tuple[dict[str, list[float]], dict[str, Any]]:
    hp = resolve(method, with_defaults(method, values, task.defaults))
    result = train(task=task, method=method, hyperparameters=hp, seed=0)
    return result.curves, hp


def plain_expected(task: Task, hp: dict[str, Any]) -> int:
    per_size = {size: step_flops(task, hp, size) for size in set(step_sizes(task, hp["batch_size"]))}
    return hp["epochs"] * sum(per_size[size] for size in step_sizes(task, hp["batch_size"]))


def blobs_dataset_task() -> Task:
    """``user_task.classification`` served as map-style Datasets (DataLoader batches, not tensor slices)."""
    tensors = user_task.classification()
    return Task(build_model=tensors.build_model, train=TensorDataset(*tensors.train), val=TensorDataset(*tensors.val),
                name="blobs-dataset")


@pytest.mark.parametrize(("case", "method", "values"), [
    ("mlp", "fixed", {"lr": 0.05, "epochs": 2, "batch_size": 300}),  # 2,048 images: 6 batches of 300 and one of 248
    ("char-gpt", "cosine", {"epochs": 2, "batch_size": 12, "warmup_steps": 4}),
    ("dataset", "fixed", {"lr": 0.05, "epochs": 2, "batch_size": 100}),
    ("transformers-dicts", "wsd", {"epochs": 2, "batch_size": 8, "optimizer": "adamw", "lr": 1e-3, "warmup_steps": 2}),
])
def test_train_flops_is_one_counted_step_times_the_schedule_s_steps(
    case: str, method: str, values: dict[str, Any], data_dir: Path, small_task: Task,
) -> None:
    task = {
        "mlp": lambda: small_task,
        "char-gpt": lambda: load_task("shakespeare-char", {"n_layer": 1, "n_embd": 32, "n_head": 2, "block_size": 32,
                                                           "epoch_windows": 100, "val_windows": 40}, data_dir=data_dir),
        "dataset": blobs_dataset_task,
        "transformers-dicts": lambda: load_task("shakespeare-gpt2", {"n_layer": 1, "n_embd": 32, "n_head": 2, "block_size": 16,
                                                                     "epoch_windows": 60, "val_windows": 20}, data_dir=data_dir),
    }[case]()
    curves, hp = run(task, method, values)
    expected = plain_expected(task, hp)
    assert expected > 0
    assert math.fsum(curves["flops"]) == expected, (curves["flops"], expected)
    assert sum(curves["samples"]) == hp["epochs"] * task.samples_per_epoch
    if task.sequence:  # every window is a full block of tokens
        block = task.options["block_size"]
        assert sum(curves["tokens"]) == hp["epochs"] * task.samples_per_epoch * block
    else:
        assert "tokens" not in curves
    torch.manual_seed(0)
    model = task.build_model()
    assert curves["eval_flops"] == [counted(lambda: task.evaluate(model, task.val))] * hp["epochs"]


def test_the_curvature_schedule_s_hessian_trace_estimates_are_counted(small_task: Task) -> None:
    values = {"lr": 0.05, "epochs": 2, "batch_size": 300, "estimate_every": 3, "n_probes": 2, "lam": 10.0}
    curves, hp = run(small_task, "curvature", values)
    generator = torch.Generator().manual_seed(0)

    def estimate(loss: torch.Tensor, params: list[torch.Tensor]) -> None:
        hutchinson_trace(loss, params, n_probes=2, generator=generator)

    sizes = step_sizes(small_task, 300) * 2  # the run's steps, both epochs
    plain = {size: step_flops(small_task, hp, size) for size in set(sizes)}
    probed = {size: step_flops(small_task, hp, size, extra=estimate) for size in set(sizes)}
    expected = sum((probed if step % 3 == 0 else plain)[size] for step, size in enumerate(sizes))
    assert math.fsum(curves["flops"]) == expected
    assert expected > plain_expected(small_task, hp) * 1.2  # Hessian-vector products are not free


def test_lrpo_s_predictor_probes_and_fit_are_counted_in_the_jump_epoch(small_task: Task) -> None:
    values = {"lr": 0.05, "batch_size": 512, "pretrain_epochs": 1, "finetune_epochs": 1, "variant": "predicted",
              "probe_candidates": 3, "predictor_hidden": 8}
    curves, hp = run(small_task, "lrpo", values)
    step = step_flops(small_task, hp, 512)
    per_epoch = step * len(step_sizes(small_task, 512))
    torch.manual_seed(0)
    model = small_task.build_model()
    held = first_batch(small_task, 512)
    held_loss = counted(lambda: small_task.batch_loss(model, held))  # each probe's loss on its held batch
    alphas = torch.linspace(0.5, 2.0, 3)
    fit = counted(lambda: fit_predictor(alphas, torch.rand(3), hidden=8, seed=0)(torch.linspace(0.5, 2.0, 101)))
    probes = 3 * (3 * step + held_loss) + fit  # 3 candidates × (3 probe steps + the held batch), then the predictor
    assert curves["flops"] == [per_epoch + probes, per_epoch, per_epoch]  # the probes belong to the epoch before the jump
    faithful, _ = run(small_task, "lrpo", {**values, "variant": "faithful"})
    assert faithful["flops"] == [per_epoch] * 3


def test_counting_leaves_training_exactly_as_it_was(small_task: Task) -> None:
    """The counted step runs under FlopCounterMode; the model it trains is bit for bit the one it would be."""
    hp = resolve("curvature", {"lr": 0.05, "epochs": 2, "batch_size": 300, "estimate_every": 3})
    counted_run = train(task=small_task, method="curvature", hyperparameters=hp, seed=0)
    plain_run = train(task=small_task, method="curvature", hyperparameters=hp, seed=0, count_flops=False)
    assert counted_run.curves["val_loss"] == plain_run.curves["val_loss"]
    assert counted_run.curves["train_loss"] == plain_run.curves["train_loss"]
    assert "flops" not in plain_run.curves and "samples" in plain_run.curves


@pytest.mark.parametrize(("method", "values"), [
    ("cosine", {"lr": 0.05, "epochs": 3, "batch_size": 512}),  # a step schedule: served by step keys
    ("lrpo", {"lr": 0.05, "batch_size": 512, "pretrain_epochs": 1, "finetune_epochs": 1, "variant": "predicted",
              "probe_candidates": 3}),  # per-epoch lrs: its probe runs again on the cached state, and counts
])
def test_epochs_served_by_the_trajectory_cache_count_at_their_full_cost(
    method: str, values: dict[str, Any], small_task: Task, tmp_path: Path,
) -> None:
    from lrpo_study.training.cache import TrajectoryCache  # noqa: PLC0415

    hp = resolve(method, values)
    cache = TrajectoryCache(tmp_path / "cache")
    computed = train(task=small_task, method=method, hyperparameters=hp, seed=0, cache=cache)
    served = train(task=small_task, method=method, hyperparameters=hp, seed=0, cache=cache)
    assert served.extras["cached_epochs"] >= 2
    for curve in ("flops", "eval_flops", "samples"):
        assert served.curves[curve] == computed.curves[curve], curve
    assert served.value("train_flops") == computed.value("train_flops") > 0
