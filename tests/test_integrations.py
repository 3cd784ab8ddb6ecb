"""Exported settings in PyTorch Lightning and the Hugging Face Trainer, against our plain loop.

Each framework trains its own small model and data for 2 epochs with each method's exported
settings; the same model from the same initial weights, on the same batches, then goes through
the README's plain loop. The lr of every step and the losses must agree.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import transformers

import lrpo_study
from lrpo_study.integrations.settings import PROVENANCE_KEYS, SCHEMA_VERSION
from lrpo_study.training.hyperparameters import resolve

from .conftest import DATA_DIR, REPO

# Two epochs of each method, chosen so that every schedule moves the lr within them.
METHODS: dict[str, dict[str, Any]] = {
    "fixed": {"lr": 0.05},
    "cosine": {"lr": 0.1, "eta_min": 1e-3},
    "onecycle": {"lr": 0.1, "pct_start": 0.4},
    "lrpo": {"lr": 0.1, "pretrain_epochs": 1, "finetune_epochs": 0},
    "greedylr-step": {"lr": 0.05, "interval": "step", "factor": 0.7, "patience": 0, "min_lr": 1e-3, "max_lr": 0.3},
    "greedylr-epoch": {"lr": 0.05, "interval": "epoch", "factor": 0.5, "patience": 0},
    "curvature": {"lr": 0.1, "lam": 50.0, "estimate_every": 2, "beta": 0.5},
    "wsd": {"lr": 0.1, "warmup_steps": 2, "decay_fraction": 0.5, "decay_shape": "1-sqrt", "min_lr_ratio": 0.01},
    "pbt": {"lr": 0.03, "lrs": [0.1, 0.03], "piece_epochs": 1},
}


def exported(case: str, tmp_path: Path) -> Path:
    """A settings file as ``export`` writes it."""
    method = case.split("-")[0]
    hp = resolve(method, {"epochs": 2, "batch_size": 8, "momentum": 0.9, **METHODS[case]})
    settings = {
        "schema_version": SCHEMA_VERSION, "method": method, "hyperparameters": hp, "objectives": {"final_val_loss": 1.0},
        "provenance": {key: None for key in PROVENANCE_KEYS},
    }
    path = tmp_path / f"{case}.json"
    path.write_text(json.dumps(settings))
    return path


def plain_loop(
    model: torch.nn.Module, settings: Path, train: Any, val: Any, loss_of: Callable[[Any], torch.Tensor],
    make_optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
) -> tuple[list[float], list[float]]:
    """The README's loop; returns the lr and loss of every step."""
    optimizer = make_optimizer(model.parameters())
    schedule = lrpo_study.load_schedule(settings, optimizer, params=model.parameters(), steps_per_epoch=len(train))
    lrs, losses = [], []
    for _ in range(schedule.epochs or 0):
        model.train()
        for batch in train:
            lrs.append(optimizer.param_groups[0]["lr"])
            loss = loss_of(batch)
            losses.append(float(loss.detach()))
            schedule.observe(loss)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.batch_end()
        schedule.epoch_end(val_loss=evaluate(model, val, loss_of))
    return lrs, losses


def evaluate(model: torch.nn.Module, batches: Any, loss_of: Callable[[Any], torch.Tensor]) -> float:
    """The mean loss per sample, as both frameworks report it."""
    model.eval()
    with torch.no_grad():
        sizes = [len(b["labels"] if isinstance(b, dict) else b[1]) for b in batches]
        return sum(float(loss_of(b)) * n for b, n in zip(batches, sizes, strict=True)) / sum(sizes)


def assert_moves(lrs: list[float], case: str) -> None:
    if case != "fixed":
        assert len(set(lrs)) > 1, f"{case}: the schedule must move the lr in two epochs"


# ---------------------------------------------------------------------------------------- Lightning

def xor_loader(seed: int, n: int) -> torch.utils.data.DataLoader:
    """Our own data: points in the plane, labelled by the quadrant's sign (not Fashion-MNIST)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=gen)
    y = (x[:, 0] * x[:, 1] > 0).long()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def sgd(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)


class XorModule(L.LightningModule):
    def __init__(self, net: torch.nn.Module, settings: Path, steps_per_epoch: int) -> None:
        super().__init__()
        self.net, self.settings, self.steps_per_epoch = net, settings, steps_per_epoch
        self.lrs: list[float] = []
        self.losses: list[float] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        self.losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y))

    def configure_optimizers(self) -> dict[str, Any]:
        from lrpo_study.integrations.lightning import lr_scheduler_config

        optimizer = sgd(self.parameters())
        schedule = lrpo_study.load_schedule(self.settings, optimizer, params=self.parameters(), steps_per_epoch=self.steps_per_epoch)
        return {"optimizer": optimizer, "lr_scheduler": lr_scheduler_config(schedule)}


@pytest.mark.parametrize("case", METHODS)
def test_lightning_steps_every_method_like_the_plain_loop(case: str, tmp_path: Path) -> None:
    from lrpo_study.integrations.lightning import ScheduleCallback

    settings = exported(case, tmp_path)
    train, val = xor_loader(0, 92), xor_loader(1, 44)  # the last batches are short
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    start = copy.deepcopy(net)
    module = XorModule(net, settings, len(train))
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[ScheduleCallback()], default_root_dir=tmp_path,
    )
    trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    lrs, losses = plain_loop(start, settings, train, val, lambda b: F.cross_entropy(start(b[0]), b[1]), sgd)
    assert len(module.lrs) == len(lrs) == 2 * len(train)
    assert_moves(lrs, case)
    torch.testing.assert_close(torch.tensor(module.losses), torch.tensor(losses), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(module.lrs, dtype=torch.float64), torch.tensor(lrs, dtype=torch.float64), rtol=1e-5, atol=0)


# ------------------------------------------------------------------------------- Hugging Face Trainer

def char_windows(start: int, count: int, vocab: dict[str, int]) -> list[dict[str, torch.Tensor]]:
    """Our own data: windows of real text (Tiny Shakespeare), labels = inputs (the model shifts them).
    The first label is masked: it is never a target, and so the Trainer counts the same tokens as the model."""
    text = (Path(os.environ.get("LRPO_DATA_DIR", DATA_DIR)) / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    ids = torch.tensor([vocab.setdefault(c, len(vocab)) for c in text[start:start + count * 16]])
    return [{"input_ids": w, "labels": torch.cat([torch.tensor([-100]), w[1:]])} for w in ids.view(count, 16)]


def tiny_gpt(vocab_size: int) -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=vocab_size, n_positions=16, n_embd=16, n_layer=1, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
        # The curvature schedule differentiates twice; torch's fused CPU attention has no double backward.
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config)


class RecordLr(transformers.TrainerCallback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_step_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize("case", METHODS)
def test_hf_trainer_steps_every_method_like_the_plain_loop(case: str, tmp_path: Path) -> None:
    from lrpo_study.integrations.hf import ScheduleCallback

    vocab: dict[str, int] = {}
    train, val = char_windows(0, 32, vocab), char_windows(20_000, 16, vocab)
    model = tiny_gpt(len(vocab) + 8)
    start = copy.deepcopy(model)
    settings = exported(case, tmp_path)
    optimizer = sgd(model.parameters())
    schedule = lrpo_study.load_schedule(settings, optimizer, params=model.parameters(), steps_per_epoch=4)
    callback, record = ScheduleCallback(schedule), RecordLr()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), num_train_epochs=schedule.epochs, per_device_train_batch_size=8,
        per_device_eval_batch_size=8, eval_strategy="epoch", save_strategy="no", logging_strategy="no",
        report_to=[], use_cpu=True, max_grad_norm=0.0, disable_tqdm=True, seed=0,
        train_sampling_strategy="sequential",  # the plain loop below sees the same batches
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=train, eval_dataset=val, optimizers=(optimizer, callback.scheduler),
        callbacks=[callback, record],
    )
    trainer.train()
    eval_loss = trainer.evaluate()["eval_loss"]

    batches = [transformers.default_data_collator(train[i:i + 8]) for i in range(0, 32, 8)]
    val_batches = [transformers.default_data_collator(val[i:i + 8]) for i in range(0, 16, 8)]
    lrs, _ = plain_loop(start, settings, batches, val_batches, lambda b: start(**b).loss, sgd)
    assert len(record.lrs) == len(lrs) == 8
    assert_moves(lrs, case)
    torch.testing.assert_close(torch.tensor(record.lrs, dtype=torch.float64), torch.tensor(lrs, dtype=torch.float64), rtol=1e-5, atol=0)
    with torch.no_grad():
        start.eval()
        plain_eval = sum(float(start(**b).loss) for b in val_batches) / len(val_batches)
    assert eval_loss == pytest.approx(plain_eval, rel=1e-4)


# ------------------------------------------------------------------------------------ README examples

EXAMPLE = re.compile(r"<!-- example: (\w+) -->\n```python\n(.*?)```", re.S)

RUNNER = """
import runpy, shutil, sys
for path in sys.argv[2:]:
    shutil.copy(path, "best.json")
    runpy.run_path(sys.argv[1], run_name="__main__")
    print("ran", path, flush=True)
"""


def test_readme_plain_loop_is_short_and_has_no_case_per_method() -> None:
    code = dict(EXAMPLE.findall((REPO / "README.md").read_text(encoding="utf-8")))["plain"]
    loop = code[code.index("schedule = "):].strip().splitlines()
    assert len(loop) <= 10 and not any(re.search(r"\bif\b|interval|monitor", line) for line in loop), loop


# Every method runs through each framework above; here each README example runs with a schedule of
# each kind: a function of the step, the training loss per step or per epoch, the validation loss, the loss graph.
README_CASES = ("cosine", "greedylr-step", "greedylr-epoch", "lrpo", "curvature")


@pytest.mark.parametrize("name", ["plain", "lightning", "hf"])
def test_readme_example_runs_with_a_schedule_of_each_kind(name: str, tmp_path: Path) -> None:
    examples = dict(EXAMPLE.findall((REPO / "README.md").read_text(encoding="utf-8")))
    assert set(examples) == {"plain", "lightning", "hf"}
    (tmp_path / "example.py").write_text(examples[name], encoding="utf-8")
    (tmp_path / "runner.py").write_text(RUNNER, encoding="utf-8")
    settings = [str(exported(case, tmp_path)) for case in README_CASES]
    proc = subprocess.run(
        [sys.executable, "runner.py", "example.py", *settings], cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ran ") == len(README_CASES)
