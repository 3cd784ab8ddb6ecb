"""``shakespeare-gpt2``: transformers' GPT-2 architecture on Tiny Shakespeare characters, as an NLP project trains.

The model is ``transformers.GPT2LMHeadModel`` built from a config (no download; the ``hf`` extra),
sized like ``shakespeare-char`` (4 layers, 4 heads, 128 wide, context 64). The data are the same
characters and split as ``shakespeare-char``, served by a Dataset of dict batches
(``{"input_ids": w, "labels": w}``): the model computes its own loss (shifting the labels itself),
so this task exercises the Dataset path and dict batches every day. It starts from nanoGPT's
recipe, like ``shakespeare-char``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from lrpo_study.errors import UserError
from lrpo_study.schedules import Param

from ._task import Task
from .shakespeare import DEFAULTS, MD5, _spaced, split_ids, windows
from .shakespeare import OPTIONS as OPTIONS_CHAR

NAME = "shakespeare-gpt2"
# The same data and model size options as shakespeare-char (not its attention kernel or biases: GPT-2's own).
OPTIONS: dict[str, Param] = {
    k: OPTIONS_CHAR[k] for k in ("split", "block_size", "n_layer", "n_head", "n_embd", "dropout", "epoch_windows", "val_windows")
}


class CharacterWindows(Dataset):  # type: ignore[type-arg]
    """Windows of character ids as transformers batches: the labels are the inputs (the model shifts them)."""

    def __init__(self, ids: torch.Tensor) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        window = self.ids[i].long()
        return {"input_ids": window, "labels": window}


def make_task(*, data_dir: str | os.PathLike[str] | None = None, seed: int = 0, **options: Any) -> Task:
    """``options`` are already validated against ``OPTIONS``."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel  # noqa: PLC0415  (an extra; imported only here)
    except ImportError:
        raise UserError(f"task {NAME!r} needs transformers: pip install 'lrpo_study[hf]'") from None
    o = options
    if o["n_embd"] % o["n_head"]:
        raise UserError(f"task {NAME!r}: n_embd must be a multiple of n_head, got n_embd={o['n_embd']} n_head={o['n_head']}")
    block = o["block_size"]
    train_ids, val_ids, test_ids, vocab_size = split_ids(data_dir, split=o["split"], block_size=block, task=NAME)
    config = GPT2Config(
        vocab_size=vocab_size, n_positions=block, n_embd=o["n_embd"], n_layer=o["n_layer"], n_head=o["n_head"],
        resid_pdrop=o["dropout"], embd_pdrop=o["dropout"], attn_pdrop=o["dropout"], bos_token_id=0, eos_token_id=0,
    )

    def build_model() -> nn.Module:
        model = GPT2LMHeadModel(config)
        model.loss_type = "ForCausalLM"  # named, so transformers does not warn that it guessed it
        return model

    train = CharacterWindows(windows(train_ids, block)[0])
    test = None if test_ids is None else CharacterWindows(windows(test_ids, block, stride=block)[0])
    return Task(
        build_model=build_model, train=train, val=CharacterWindows(_spaced(windows(val_ids, block), o["val_windows"])[0]),
        test=test, name=NAME, epoch_size=min(o["epoch_windows"], len(train)), eval_batch=128, decay_matrices_only=True,
        defaults=DEFAULTS, options=options, sequence=True,
        fingerprint=hashlib.sha256(f"{MD5};{o['split']};{block};{o['val_windows']};gpt2-dicts".encode()).hexdigest()[:32],
    )
