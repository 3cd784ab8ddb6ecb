"""Model and loss identity: what a trajectory-cache or checkpoint key must name besides the data.

Two tasks with the same name, options and data but an edited model (its structure, its
initialisation, the code of its ``forward``) or an edited loss must never share cached epochs
or checkpoints. The identity hashes the model as built after seeding (every parameter's and
buffer's name, shape, dtype and bytes), the module tree (``repr``: types and their settings),
the bytecode of every module class's ``forward`` and of the loss.
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def hash_tensor(digest: Any, tensor: torch.Tensor, label: str = "") -> None:
    """Feed ``digest`` a tensor's label, shape, dtype and bytes (equal tensors, equal updates)."""
    t = tensor.detach().cpu().contiguous()
    digest.update(f"{label}{tuple(t.shape)}{t.dtype};".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def _code_bytes(code: types.CodeType) -> bytes:
    """A code object's bytecode, constants (nested functions included) and names."""
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for const in code.co_consts:
        parts.append(_code_bytes(const) if isinstance(const, types.CodeType) else repr(const).encode())
    return b"\x00".join(parts)


def callable_identity(fn: Any) -> bytes:
    """What decides a callable's behaviour as far as its code goes (functions, partials, callable objects)."""
    if hasattr(fn, "func") and hasattr(fn, "args"):  # functools.partial
        return b"partial:" + callable_identity(fn.func) + repr((fn.args, sorted(fn.keywords.items()))).encode()
    code = getattr(fn, "__code__", None)
    if code is not None:
        return f"{fn.__module__}.{fn.__qualname__}:".encode() + _code_bytes(code)
    kind = f"{type(fn).__module__}.{type(fn).__qualname__}:".encode()
    if isinstance(fn, nn.Module):  # a loss module: its settings (repr omits some, e.g. label_smoothing) and code
        settings = sorted((k, repr(v)) for k, v in vars(fn).items() if not k.startswith("_"))
        forward = getattr(type(fn).forward, "__code__", None)
        return kind + repr(settings).encode() + (_code_bytes(forward) if forward is not None else b"")
    call_code = getattr(type(fn).__call__, "__code__", None)  # a callable object: its class's __call__
    return kind + (_code_bytes(call_code) if call_code is not None else repr(fn).encode())


def model_identity(model: nn.Module, loss: Callable[..., Any]) -> str:
    """sha256 over the model as built (structure, forward code, initial parameters and buffers) and the loss."""
    digest = hashlib.sha256(repr(model).encode())
    for kind in sorted({type(m) for m in model.modules()}, key=lambda t: f"{t.__module__}.{t.__qualname__}"):
        code = getattr(getattr(kind, "forward", None), "__code__", None)
        digest.update(f"{kind.__module__}.{kind.__qualname__};".encode())
        if code is not None:
            digest.update(_code_bytes(code))
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        hash_tensor(digest, tensor, name)
    digest.update(callable_identity(loss))
    return digest.hexdigest()[:32]
