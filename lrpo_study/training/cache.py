"""Trajectory cache: train a shared prefix of epochs once, branch from it many times.

The training state after epoch e (model, optimizer, RNG states of the loop,
curves) depends only on what came before: data, model (its structure, forward
code and initial parameters) and loss, seed, batch size,
optimizer settings, device, versions, and the lr used in each epoch so far.
For schedules whose lr is constant within an epoch (fixed, LRPO, GreedyLR per
epoch) that lr history is the whole story, so the state is stored under a hash
of (those settings, lr history). For schedules whose settings are a function of
the step (cosine, one-cycle, wsd), the key hashes every param group's settings
at every step so far instead: a wsd run shares its trunk with every other run of
the same peak and warm-up until its decay starts, at any length. A trial walks its own schedule forward over
cached epochs — each hit hands the schedule that epoch's recorded loss, which
gives the next epoch's lr and so the next key — and resumes from its longest
hit. Results are identical to training from scratch; cached epochs keep the
seconds measured when they were computed.

Entries are written atomically (temporary file + ``os.replace``) with a digest
of their bytes, and read only when the digest matches (``checkpoints.decode``):
an entry damaged on disk, even by one flipped bit in a weight, is a miss
(with a warning) and is deleted, so nothing is trained or stored from it. Past ``max_bytes`` the least recently used entries
(by modification time, refreshed on every hit) are evicted.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import torch

from lrpo_study import metrics
from lrpo_study._version import __version__
from lrpo_study.schedules import make_schedule
from lrpo_study.tasks import Task

from .checkpoints import CheckpointStore, DamagedFile, read_state
from .loop_state import LoopState
from .optimizers import OPTIMIZER_PARAMS

# Besides the lr history, what decides a trajectory: the optimizer's settings and the batch size.
TRAJECTORY_HYPERPARAMETERS = (*OPTIMIZER_PARAMS, "batch_size", "grad_clip")


def _device_kind(device: torch.device) -> str:
    """What decides the numbers: the GPU's model (workers on cuda:0 and cuda:1 of one kind share), not its index."""
    if device.type != "cuda":
        return device.type
    return f"cuda:{torch.cuda.get_device_name(device)}"


def cache_context(
    task: Task, *, seed: int, device: torch.device, hp: Mapping[str, Any], model: str,
) -> dict[str, Any]:
    """Everything besides the lr history that decides the trajectory (``model``: ``model_identity``)."""
    return {
        "task": task.name, "task_options": dict(task.options), "data": task.fingerprint, "model": model, "seed": seed,
        "device": _device_kind(device), "torch": torch.__version__, "lrpo_study": __version__,
        **{k: hp[k] for k in TRAJECTORY_HYPERPARAMETERS if k in hp},
    }


@contextlib.contextmanager
def _replaying() -> Iterator[None]:
    """Stepping a schedule without an optimizer step is the point here, not the mistake torch warns about."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before", category=UserWarning)
        yield


def step_plan(
    method: str, optimizer: torch.optim.Optimizer, hp: Mapping[str, Any], *, total_steps: int, ignore: Collection[str],
) -> list[str]:
    """For a schedule whose settings are a function of the step: every param group's settings (lr,
    momentum or betas, ...) at each step of the run, worked out on a scratch copy of ``optimizer``'s
    groups before the real schedule is built."""
    # The optimizer's own class on one-element stand-ins: its groups carry its settings.
    groups = [{**{k: copy.deepcopy(v) for k, v in g.items() if k != "params"}, "params": [torch.zeros(1, requires_grad=True)]}
              for g in optimizer.param_groups]
    scratch = type(optimizer)(groups)  # type: ignore[call-arg]
    schedule = make_schedule(method, scratch, hp, total_steps=total_steps, ignore=ignore)
    plan = []
    with _replaying():
        for _ in range(total_steps):
            plan.append(repr([sorted((k, v) for k, v in g.items() if k not in ("params", "initial_lr")) for g in scratch.param_groups]))
            schedule.step()
    return plan


def step_keys(context: Mapping[str, Any], plan: list[str], *, steps_per_epoch: int, epochs: int) -> list[str]:
    """The key of the state after each epoch: a running hash of every step's group settings so far, so two
    runs share an epoch exactly when their settings agreed at every step up to it, whatever their lengths."""
    digest = hashlib.sha256(json.dumps(context, sort_keys=True, default=str).encode())
    keys = []
    for epoch in range(epochs):
        for row in plan[epoch * steps_per_epoch:(epoch + 1) * steps_per_epoch]:
            digest.update(row.encode())
        keys.append("s" + digest.copy().hexdigest()[:39])
    return keys


def resume_from_step_cache(cache: TrajectoryCache, keys: list[str], state: LoopState) -> None:
    """Continue from the longest cached prefix of a step schedule's trajectory. The schedule keeps its own
    settings (another run's may be longer) and is stepped to the epoch boundary, which sets every group
    setting exactly as the cached run had it there (the key says so)."""
    hits = 0
    while hits < len(keys) and cache.has(keys[hits]):
        hits += 1
    entry = None
    while hits and entry is None:  # an entry evicted or damaged meanwhile: fall back to a shorter prefix
        entry = cache.get(keys[hits - 1])
        hits -= entry is None
    if entry is None:
        return
    schedule = state.schedule
    own = schedule.state_dict()
    steps = int(entry["step"])
    state.restore(entry)
    schedule.load_state_dict(own)
    with _replaying():
        for _ in range(steps):
            schedule.step()
    state.cached_epochs = hits


def trajectory_key(context: Mapping[str, Any], lr_history: list[list[float]]) -> str:
    payload = json.dumps({"context": context, "lrs": [[float.hex(lr) for lr in lrs] for lrs in lr_history]}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:40]


def resume_from_cache(
    cache: TrajectoryCache, context: Mapping[str, Any], state: LoopState, *, epochs: int, sync: Callable[[], None],
) -> None:
    """Walk the schedule over cached epochs (each hit's losses give the next lr, hence the next
    key) and continue from the longest hit. A step that needs the model (LRPO's probe) is taken
    on the restored state of that epoch, then the walk goes on."""
    schedule = state.schedule
    history: list[list[float]] = []
    entry: dict[str, Any] | None = None
    restored = 0
    own_steps: list[tuple[float, int]] = []  # seconds and FLOPs of this trial's own schedule steps

    def restore(snapshot: dict[str, Any]) -> None:
        walked = schedule.state_dict()  # ours, not the schedule of the trial that computed the entry
        state.restore(snapshot)
        schedule.load_state_dict(walked)

    while len(history) < epochs:
        lrs = [float(lr) for lr in schedule.get_last_lr()]
        hit = cache.get(trajectory_key(context, [*history, lrs]))
        if hit is None:
            break
        history.append(lrs)
        entry = hit
        if len(history) == epochs:
            break
        if not schedule.replay_safe(len(history)):
            restore(hit)
            restored = len(history)
        curves = hit["curves"]
        with _replaying():
            own_steps.append(state.epoch_step(curves[metrics.TRAIN_LOSS][-1], curves[metrics.VAL_LOSS][-1], sync))
    if entry is None:
        return
    hits = len(history)
    if restored != hits:
        restore(entry)
    # Honest cost: the training seconds and FLOPs of each epoch when it was computed, plus this
    # trial's own schedule steps (another trial's predictor probes are not ours).
    own_steps += [(0.0, 0)] * (hits - len(own_steps))
    state.curves[metrics.SECONDS] = [t + s for t, (s, _) in zip(state.train_seconds, own_steps, strict=True)]
    state.curves[metrics.FLOPS] = [t + f for t, (_, f) in zip(state.train_flops, own_steps, strict=True)]
    state.cached_epochs = hits


def served_line(who: str, *, cached: int, epochs: int) -> str:
    """The one line ``optimize`` and ``confirm`` print about what the cache served."""
    return f"{who}: {cached} of {epochs} epochs came from the trajectory cache ({cached / max(1, epochs):.0%})"


class TrajectoryCache:
    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int = 2 * 1024**3) -> None:
        self.store = CheckpointStore(directory, what="trajectory cache entries")
        self.max_bytes = max_bytes

    def has(self, key: str) -> bool:
        return self.store.path(key).exists()

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.store.path(key)
        try:
            state = read_state(path)
        except (DamagedFile, OSError) as exc:  # a damaged entry is recomputed, never fatal
            warnings.warn(f"trajectory cache: ignoring unreadable entry {path.name}: {exc}", stacklevel=2)
            path.unlink(missing_ok=True)
            return None
        if state is None:
            return None
        try:
            os.utime(path)
        except OSError:
            pass  # evicted by another worker meanwhile; we already hold its content
        return state

    def put(self, key: str, state: dict[str, Any]) -> None:
        # Written even when an entry exists: this epoch was computed, so that entry lay past a miss and may be
        # the damaged one that caused it (another worker's copy of the same key holds the same state anyway).
        if self.store.save(key, state):
            self._evict()

    def _evict(self) -> None:
        self.store.remove_stale_tmp()
        entries = []
        for path in self.store.directory.glob("*.pt"):
            try:
                st = path.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.store.directory.glob("*.pt"))
