"""``shakespeare-char``: a character-level GPT on Tiny Shakespeare (nanoGPT's ``shakespeare_char``).

Data: the 1,115,394-byte ``input.txt`` of karpathy/char-rnn, 65 distinct
characters, read from ``DATA_ROOT/tinyshakespeare/input.txt`` (downloaded
there when the data root allows it; size and md5 are checked). The split is
nanoGPT's: the first 90 % of the characters train. With ``split = "nanogpt"``
the last 10 % validate, as in nanoGPT (no test slice); with the default
``split = "holdout"`` characters [90 %, 95 %) validate and [95 %, 100 %) are the
held-out test slice for ``confirm``.

Samples are windows of ``block_size`` characters; targets are the inputs
shifted by one. An epoch is ``epoch_windows`` windows drawn without
replacement from every window of the training text (a fresh draw each epoch,
as nanoGPT draws random offsets): the default 2,400 windows of 64 characters
are 153,600 tokens, 200 iterations of nanoGPT's batch of 12, so its
2,000-iteration run (1.536 M tokens) is 10 epochs; 5.7 to 11 s per epoch for
the default model on 2 CPU cores, depending on the machine (measured:
scripts/bench_epoch.py). Validation scores ``val_windows`` windows evenly spaced over
the validation text (the test slice: all of its non-overlapping windows).

Model: GPT-style decoder, pre-LayerNorm blocks, causal self-attention through
``scaled_dot_product_attention``, GELU MLP, final LayerNorm, and a linear head
tied to the token embedding (as nanoGPT). Defaults are nanoGPT's CPU
configuration: 4 layers, 4 heads, 128-dimensional embeddings, context 64,
dropout 0, no biases (0.80 M parameters). Weight decay applies to weight
matrices only (``Task.decay_matrices_only``).
"""

from __future__ import annotations

import hashlib
import math
import os
import urllib.request
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from lrpo_study.errors import UserError
from lrpo_study.schedules import Param

from ._task import Task
from .data import resolve_root

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SIZE = 1_115_394
MD5 = "6fb458f1232090904fb40fe944165e91"

# nanoGPT's shakespeare_char CPU recipe: 2000 iterations of batch 12 are 10 epochs of this task.
DEFAULTS = {"optimizer": "adamw", "lr": 1e-3, "beta2": 0.99, "weight_decay": 0.1, "grad_clip": 1.0, "batch_size": 12,
            "epochs": 10, "warmup_steps": 100, "eta_min": 1e-4}

OPTIONS: dict[str, Param] = {
    "split": Param(str, "holdout", "holdout: val [90%, 95%), test [95%, 100%); nanogpt: val = last 10%, no test",
                   choices=("holdout", "nanogpt")),
    "block_size": Param(int, 64, "context length (characters)", low=2, high=4096),
    "n_layer": Param(int, 4, "transformer blocks", low=1, high=64),
    "n_head": Param(int, 4, "attention heads", low=1, high=64),
    "n_embd": Param(int, 128, "embedding width (a multiple of n_head)", low=8, high=4096),
    "dropout": Param(float, 0.0, "dropout", low=0.0, high=1.0, high_open=True),
    "bias": Param(bool, False, "biases in linear layers and LayerNorms"),
    "attention": Param(str, "fused", "fused: torch's fastest kernel; math: differentiable twice (the curvature schedule)",
                       choices=("fused", "math")),
    "epoch_windows": Param(int, 2400, "training windows per epoch (tokens = this x block_size)", low=1, high=10**8),
    "val_windows": Param(int, 400, "validation windows, evenly spaced", low=1, high=10**8),
}


def text_path(data_dir: str | os.PathLike[str] | None) -> Path:
    """``input.txt`` under the data root, downloaded when allowed; size and md5 checked."""
    root, may_download = resolve_root(data_dir)
    path = root / "tinyshakespeare" / "input.txt"
    if not path.exists():
        if not may_download:
            raise UserError(
                f"Tiny Shakespeare is not in {path.parent} and downloading is off: put input.txt there "
                f"(from {URL}) or pass --data-dir DIR / LRPO_DATA_DIR=DIR pointing at a folder that has tinyshakespeare/"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(URL, timeout=60) as response:
                data = response.read()
        except OSError as exc:
            raise UserError(f"cannot download Tiny Shakespeare from {URL}: {exc}; "
                            "put input.txt in DATA_ROOT/tinyshakespeare/ and pass --data-dir") from None
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    data = path.read_bytes()
    if len(data) != SIZE or hashlib.md5(data).hexdigest() != MD5:  # noqa: S324 (a checksum, not security)
        raise UserError(
            f"{path} is not Tiny Shakespeare's input.txt ({len(data):,} bytes, md5 {hashlib.md5(data).hexdigest()}; "  # noqa: S324
            f"expected {SIZE:,} bytes, md5 {MD5}): delete it to download it again, or replace it"
        )
    return path


def windows(ids: torch.Tensor, block_size: int, *, stride: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Every window of ``block_size`` ids (a view, no copy) and its targets, the ids one further."""
    x = ids[:-1].unfold(0, block_size, stride)
    y = ids[1:].unfold(0, block_size, stride)
    return x, y


def _spaced(pair: tuple[torch.Tensor, torch.Tensor], count: int) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.linspace(0, len(pair[0]) - 1, min(count, len(pair[0]))).round().long()
    return pair[0][index], pair[1][index]


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool, math_kernel: bool = False) -> None:
        super().__init__()
        self.n_head, self.dropout, self.math_kernel = n_head, dropout, math_kernel
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in self.c_attn(x).split(c, dim=2))
        dropout = self.dropout if self.training else 0.0
        if self.math_kernel:  # slower, but differentiable twice
            with sdpa_kernel(SDPBackend.MATH):
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(b, t, c)))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool, math_kernel: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias, math_kernel)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd, bias=bias), nn.GELU(), nn.Linear(4 * n_embd, n_embd, bias=bias), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token ids (any integer dtype) of shape (B, T) → logits (B, T, vocab)."""

    def __init__(self, *, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int,
                 dropout: float, bias: bool, math_kernel: bool = False) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout, bias, math_kernel) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as nanoGPT
        for name, p in self.named_parameters():  # nanoGPT's initialisation
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") or name.endswith("mlp.2.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        idx = idx.long()
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def split_ids(
    data_dir: str | os.PathLike[str] | None, *, split: str, block_size: int, task: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int]:
    """Character ids of the train, validation and test text (None for ``split="nanogpt"``), and the vocabulary size."""
    path = text_path(data_dir)
    raw = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)  # ASCII: one byte per character
    chars = torch.unique(raw)  # the 65 characters, sorted as nanoGPT's vocabulary
    lookup = torch.zeros(256, dtype=torch.uint8)
    lookup[chars.long()] = torch.arange(len(chars), dtype=torch.uint8)
    ids = lookup[raw.long()]
    n = len(ids)
    train_ids, rest = ids[: int(n * 0.9)], ids[int(n * 0.9):]
    val_ids, test_ids = (rest, None) if split == "nanogpt" else (rest[: len(rest) // 2], rest[len(rest) // 2:])
    for name, part in (("validation", val_ids), ("test", test_ids)):
        if part is not None and len(part) <= block_size:
            raise UserError(f"task {task!r}: block_size={block_size} is longer than the {name} text")
    return train_ids, val_ids, test_ids, len(chars)


def make_task(
    *, data_dir: str | os.PathLike[str] | None = None, seed: int = 0, split: str = "holdout", block_size: int = 64,
    n_layer: int = 4, n_head: int = 4, n_embd: int = 128, dropout: float = 0.0, bias: bool = False,
    epoch_windows: int = 2400, val_windows: int = 400, attention: str = "fused",
) -> Task:
    if n_embd % n_head:
        raise UserError(f"task 'shakespeare-char': n_embd must be a multiple of n_head, got {n_embd=} {n_head=}")
    train_ids, val_ids, test_ids, vocab_size = split_ids(data_dir, split=split, block_size=block_size, task="shakespeare-char")
    train = windows(train_ids, block_size)
    val = _spaced(windows(val_ids, block_size), val_windows)
    test = None if test_ids is None else windows(test_ids, block_size, stride=block_size)
    options = dict(split=split, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                   dropout=dropout, bias=bias, epoch_windows=epoch_windows, val_windows=val_windows, attention=attention)
    return Task(
        build_model=lambda: GPT(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
                                n_embd=n_embd, dropout=dropout, bias=bias, math_kernel=attention == "math"),
        train=train, val=val, test=test, name="shakespeare-char",
        fingerprint=hashlib.sha256(f"{MD5};{split};{block_size};{val_windows}".encode()).hexdigest()[:32],
        epoch_size=min(epoch_windows, len(train[0])), eval_batch=128, decay_matrices_only=True, options=options,
        defaults=DEFAULTS, sequence=True,
    )
