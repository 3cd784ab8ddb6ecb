"""Which device each worker trains on: worker i on GPU i mod K, as Optuna's one-process-per-GPU advice has it.

Pure functions of what the user asked for and how many CUDA devices torch sees, so the assignment
is checked (and tested) without a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

from lrpo_study.errors import UserError


def parse_devices(text: str) -> list[int]:
    """``--devices 0,2`` or ``cuda:0,cuda:2`` → ``[0, 2]``."""
    indices: list[int] = []
    for item in text.split(","):
        name = item.strip().removeprefix("cuda:")
        if not name.isdigit():
            raise UserError(f"--devices takes CUDA device indices like 0,1 or cuda:0,cuda:1, got {item.strip()!r}")
        if int(name) in indices:
            raise UserError(f"--devices names cuda:{int(name)} twice")
        indices.append(int(name))
    return indices


def worker_devices(
    *, device: str, devices: Sequence[int] | None, workers: int, trials_per_gpu: int, visible: int,
) -> list[str]:
    """The device of each of ``workers`` workers (``visible``: CUDA devices torch sees)."""
    if trials_per_gpu < 1:
        raise UserError(f"--trials-per-gpu must be >= 1, got {trials_per_gpu}")
    if devices is not None and device == "cpu":
        raise UserError("--devices picks GPUs; --device cpu uses none")
    if devices is None and (device == "cpu" or visible == 0):
        if device == "cuda":
            raise UserError("--device cuda was asked for but torch sees no CUDA device; use auto or cpu")
        return ["cpu"] * workers
    unseen = [i for i in devices or () if i >= visible]
    if unseen:
        raise UserError(f"--devices names cuda:{unseen[0]}, but torch sees {visible} CUDA device{'s' if visible != 1 else ''}"
                        + (f" (cuda:0..cuda:{visible - 1})" if visible else ""))
    gpus = list(devices) if devices is not None else list(range(visible))
    if workers > len(gpus) * trials_per_gpu:
        raise UserError(
            f"--workers {workers} on {len(gpus)} GPU{'s' if len(gpus) != 1 else ''} puts up to "
            f"{-(-workers // len(gpus))} trials on one GPU; allow it with --trials-per-gpu {-(-workers // len(gpus))}"
        )
    return [f"cuda:{gpus[i % len(gpus)]}" for i in range(workers)]
