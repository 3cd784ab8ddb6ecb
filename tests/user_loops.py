"""Training loops written the way users write them, each run as a study's trials through ``TrialRun``.

A plain PyTorch loop, a LightningModule whose ``training_step`` uses label smoothing (so the loss the
trials record is visibly the module's, not cross-entropy), and the Hugging Face Trainer on a small
GPT-2 made from a config, on real data: Fashion-MNIST and Tiny Shakespeare.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lrpo_study import TrialRun
from lrpo_study.tasks.data import load_split

DATA_DIR = Path(os.environ.get("LRPO_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
LABEL_SMOOTHING = 0.5


def fashion(train_size: int = 1024, val_size: int = 256) -> tuple[TensorDataset, TensorDataset]:
    split = load_split(split="holdout", data_dir=DATA_DIR, seed=0, train_size=train_size, val_size=val_size)
    return TensorDataset(split.train_x.flatten(1), split.train_y), TensorDataset(split.val_x.flatten(1), split.val_y)


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


def macro_f1(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """The F1 score averaged over classes, as scikit-learn's f1_score(average="macro")."""
    predicted = outputs.argmax(-1)
    scores = []
    for c in range(int(outputs.shape[-1])):
        tp = int(((predicted == c) & (targets == c)).sum())
        fp, fn = int(((predicted == c) & (targets != c)).sum()), int(((predicted != c) & (targets == c)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / len(scores)


def plain_fit(run: TrialRun) -> None:
    """pytorch/examples' loop, with the run's optimizer and schedule and one report per epoch."""
    _plain_fit(run, with_f1=False)


def f1_fit(run: TrialRun) -> None:
    """The same loop, reporting a metric of its own beside accuracy: the macro F1 score."""
    _plain_fit(run, with_f1=True)


def _plain_fit(run: TrialRun, *, with_f1: bool) -> None:
    train, val = fashion()
    torch.manual_seed(run.seed)
    model = mlp()
    loader = DataLoader(train, batch_size=run.hyperparameters["batch_size"], shuffle=True,
                        generator=torch.Generator().manual_seed(run.seed))
    optimizer = run.make_optimizer(model.parameters())
    schedule = run.make_schedule(optimizer, steps_per_epoch=len(loader), params=model.parameters())
    x_val, y_val = val.tensors
    for _ in range(run.epochs):
        model.train()
        total = 0.0
        for x, y in loader:
            with run.count_step((x, y)):  # FLOPs (counted once per batch shape) and samples, for compute objectives
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                optimizer.step()
                if schedule.interval == "step":
                    schedule.step()
            total += loss.item()
        if schedule.interval == "epoch":
            schedule.step()
        model.eval()
        with torch.no_grad():
            out = model(x_val)
        f1 = {"val_f1": macro_f1(out, y_val)} if with_f1 else {}
        run.report(train_loss=total / len(loader), val_loss=float(F.cross_entropy(out, y_val)),
                   val_accuracy=float((out.argmax(1) == y_val).float().mean()), **f1)
    if run.wants_test:
        split = load_split(split="holdout", data_dir=DATA_DIR, seed=0, train_size=1024, val_size=256)
        assert split.test_x is not None and split.test_y is not None  # the holdout split keeps the official test set
        with torch.no_grad():
            out = model(split.test_x.flatten(1))
        run.report_test(loss=float(F.cross_entropy(out, split.test_y)),
                        accuracy=float((out.argmax(1) == split.test_y).float().mean()), f1=macro_f1(out, split.test_y))


def lightning_fit(run: TrialRun) -> None:
    """An ordinary Lightning project: the module trains with its own loss; the callback reports."""
    import lightning as L  # noqa: N812, PLC0415

    from lrpo_study.integrations.lightning import TrialCallback, lr_scheduler_config  # noqa: PLC0415

    class Classifier(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(self.net(x), y, label_smoothing=LABEL_SMOOTHING)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            out = self.net(x)
            self.log("val_loss", F.cross_entropy(out, y))
            self.log("val_accuracy", (out.argmax(1) == y).float().mean())

        def configure_optimizers(self) -> Any:
            optimizer = run.make_optimizer(self.parameters())
            steps = int(self.trainer.estimated_stepping_batches) // run.epochs  # loads the training data
            schedule = run.make_schedule(optimizer, steps_per_epoch=steps, params=self.parameters())
            return {"optimizer": optimizer, "lr_scheduler": lr_scheduler_config(schedule)}

    train, val = fashion()
    L.seed_everything(run.seed, verbose=False)
    trainer = L.Trainer(max_epochs=run.epochs, callbacks=[TrialCallback(run)], accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)
    trainer.fit(Classifier(), DataLoader(train, batch_size=run.hyperparameters["batch_size"], shuffle=True),
                DataLoader(val, batch_size=256))


class _Windows(Dataset[dict[str, torch.Tensor]]):
    def __init__(self, ids: torch.Tensor, block: int) -> None:
        self.ids, self.block = ids, block

    def __len__(self) -> int:
        return (len(self.ids) - 1) // self.block

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        window = self.ids[i * self.block:(i + 1) * self.block]
        return {"input_ids": window, "labels": window}


def hf_fit(run: TrialRun) -> None:
    """The Hugging Face Trainer on a 1-layer GPT-2 made from a config, on Tiny Shakespeare's first characters."""
    import transformers  # noqa: PLC0415

    from lrpo_study.integrations.hf import TrialCallback  # noqa: PLC0415

    text = (DATA_DIR / "tinyshakespeare" / "input.txt").read_text()[:40_000]
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text])
    block = 32
    train, val = _Windows(ids[:32_000], block), _Windows(ids[32_000:], block)
    transformers.set_seed(run.seed)
    config = transformers.GPT2Config(vocab_size=len(vocab), n_positions=block, n_embd=32, n_layer=1, n_head=2)
    model = transformers.GPT2LMHeadModel(config)
    batch = run.hyperparameters["batch_size"]
    optimizer = run.make_optimizer(model.parameters())
    schedule = run.make_schedule(optimizer, steps_per_epoch=-(-len(train) // batch), params=model.parameters())
    callback = TrialCallback(run, schedule)
    args = transformers.TrainingArguments(
        output_dir=str(Path(os.environ.get("TMPDIR", "/tmp")) / f"hf-trial-{os.getpid()}"), num_train_epochs=run.epochs,
        per_device_train_batch_size=batch, per_device_eval_batch_size=64, eval_strategy="epoch",
        logging_strategy="epoch", save_strategy="no", report_to=[], use_cpu=True, seed=run.seed,
        disable_tqdm=True, dataloader_num_workers=0,
    )
    transformers.Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                         optimizers=(optimizer, callback.scheduler), callbacks=[callback]).train()


def silent_fit(run: TrialRun) -> None:
    """Misuse: trains nothing and reports nothing."""


def greedy_fit(run: TrialRun) -> None:
    """Misuse: reports one epoch more than the trial has."""
    for _ in range(run.epochs + 1):
        run.report(train_loss=1.0, val_loss=1.0, val_accuracy=0.5, lr=0.1)


def loss_only_fit(run: TrialRun) -> None:
    """Misuse for an accuracy objective: reports losses only."""
    run.report(train_loss=1.0, val_loss=1.0, lr=0.1)


NOT_CALLABLE = 3


def _blobs_fit(run: TrialRun, *, epochs: int | None = None, lr: float | None = None, hook: Any = None) -> None:
    """A small, fast plain loop on Gaussian blobs: ``epochs`` reported (default: the run's), an optimizer of its
    own at ``lr`` when given (else the run's), ``hook(run, epoch)`` before each report."""
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 8, generator=gen) * 1.5
    y = torch.randint(0, 4, (640,), generator=gen)
    x = centers[y] + torch.randn(640, 8, generator=gen)
    torch.manual_seed(run.seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr) if lr is not None else run.make_optimizer(model.parameters())
    for epoch in range(run.epochs if epochs is None else epochs):
        for i in range(0, 512, 64):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            out = model(x[512:])
        if hook is not None:
            hook(run, epoch)
        run.report(train_loss=loss.item(), val_loss=float(F.cross_entropy(out, y[512:])),
                   val_accuracy=float((out.argmax(1) == y[512:]).float().mean()), **({"lr": lr} if lr is not None else {}))


def blobs_fit(run: TrialRun) -> None:
    _blobs_fit(run)


def raises_in_trial_1(run: TrialRun) -> None:
    """The user's code fails in one trial only."""
    def hook(run: TrialRun, epoch: int) -> None:
        if run.trial.number == 1 and epoch == 1:
            raise RuntimeError("the data server went away")
    _blobs_fit(run, hook=hook)


def always_raises(run: TrialRun) -> None:
    raise ValueError(f"broken in trial {run.trial.number}")


def report_typo(run: TrialRun) -> None:
    run.report(train_los=1.0, val_loss=1.0, val_accuracy=0.5)  # type: ignore[call-arg]


def returns_after_one_epoch(run: TrialRun) -> None:
    _blobs_fit(run, epochs=1)


def stops_early_on_purpose(run: TrialRun) -> None:
    _blobs_fit(run, epochs=1)
    run.stop_early("validation loss stopped improving")


def hangs_in_trial_0(run: TrialRun) -> None:
    def hook(run: TrialRun, epoch: int) -> None:
        if run.trial.number == 0 and epoch == 1:
            import time  # noqa: PLC0415

            time.sleep(3600)  # a deadlock, as far as the study can tell
    _blobs_fit(run, hook=hook)


def own_lr(run: TrialRun) -> None:
    """Misuse while the study searches lr: its own optimizer at its own lr, reported as such."""
    _blobs_fit(run, lr=0.05)


def reads_hidden(run: TrialRun) -> None:
    """Reads its [task] option ``hidden`` (a study file that spells it ``hiden`` is refused)."""
    assert run.options.get("hidden", 32) > 0
    _blobs_fit(run)


def two_arguments(run: TrialRun, data: object) -> None:
    """Misuse: a loop takes one argument, the TrialRun."""


def declared_cost_fit(run: TrialRun) -> None:
    """A loop that cannot wrap its steps (as a framework's): it declares what each optimizer step costs."""
    run.declare_step_cost(samples=64, flops=1_000)
    _blobs_fit(run)
