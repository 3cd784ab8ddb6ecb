"""The trajectory cache: identical results, honest seconds, eviction, damaged entries."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from lrpo_study.study.objective import Objective
from lrpo_study.study.spec import load_spec
from lrpo_study.study.storage import open_storage
from lrpo_study.tasks import Task
from lrpo_study.training.cache import TrajectoryCache
from lrpo_study.training.checkpoints import CheckpointStore
from lrpo_study.training.hyperparameters import resolve
from lrpo_study.training.loop import TrainResult, train

from .conftest import REPO, cli, run_cli, write_study, write_task_study

SMALL = {"batch_size": 256}


def run(method: str, values: dict, data: Task, cache: TrajectoryCache | None) -> TrainResult:
    return train(method=method, hyperparameters=resolve(method, {**SMALL, **values}), task=data, seed=3, cache=cache)


def assert_same_run(a: TrainResult, b: TrainResult) -> None:
    for name in ("train_loss", "val_loss", "val_accuracy", "lr"):
        torch.testing.assert_close(torch.tensor(a.curves[name]), torch.tensor(b.curves[name]), rtol=0, atol=0, msg=name)
    assert a.extras.get("alpha") == b.extras.get("alpha")


@pytest.mark.parametrize(
    ("method", "first", "second", "shared"),
    [
        ("lrpo", {"pretrain_epochs": 4, "finetune_epochs": 2, "finetune_lr": 1e-3},
         {"pretrain_epochs": 4, "finetune_epochs": 3, "finetune_lr": 5e-3}, 5),  # faithful: same alpha, the jump is shared too
        ("lrpo", {"pretrain_epochs": 4, "finetune_epochs": 1, "variant": "predicted"},
         {"pretrain_epochs": 4, "finetune_epochs": 2, "variant": "predicted", "predictor_hidden": 8}, 4),
        ("fixed", {"epochs": 3}, {"epochs": 5}, 3),
        ("greedylr", {"epochs": 3, "patience": 0, "factor": 0.7}, {"epochs": 5, "patience": 0, "factor": 0.7}, 3),
        # The longer run's trunk serves the shorter: the same lr at every step until the shorter's decay
        # starts, 2.4 epochs in (mid-epoch: the branch resumes from the end of epoch 2).
        ("wsd", {"epochs": 5, "warmup_steps": 3}, {"epochs": 3, "warmup_steps": 3}, 2),
        ("wsd", {"epochs": 4, "decay_steps": 6, "decay_shape": "linear"}, {"epochs": 4, "decay_steps": 6, "decay_shape": "cosine"}, 3),
        ("cosine", {"epochs": 5}, {"epochs": 3}, 0),  # another length: another lr from the first step on
        ("cosine", {"epochs": 3, "warmup_steps": 4}, {"epochs": 3, "warmup_steps": 4}, 3),
        ("onecycle", {"epochs": 3}, {"epochs": 3}, 3),
        ("greedylr", {"epochs": 3, "interval": "step", "patience": 0}, {"epochs": 3, "interval": "step", "patience": 0}, 0),
        ("curvature", {"epochs": 2, "estimate_every": 3}, {"epochs": 2, "estimate_every": 3}, 0),
        # A PBT member that exploits: another lineage's first two generations, then its own lr.
        ("pbt", {"epochs": 4, "lrs": [0.05, 0.1], "piece_epochs": 2}, {"epochs": 6, "lrs": [0.05, 0.1, 0.02], "piece_epochs": 2}, 4),
    ],
    ids=["lrpo-faithful", "lrpo-predicted", "fixed", "greedylr", "wsd-trunk", "wsd-decay-shape", "cosine-lengths",
         "cosine-same", "onecycle", "greedylr-step", "curvature", "pbt-exploit"],
)
def test_branching_from_the_cache_equals_training_from_scratch(
    method: str, first: dict, second: dict, shared: int, small_task: Task, tmp_path: Path
) -> None:
    cache = TrajectoryCache(tmp_path / "cache")
    computed_first = run(method, first, small_task, cache)
    assert computed_first.extras["cached_epochs"] == 0
    branched = run(method, second, small_task, cache)
    scratch = run(method, second, small_task, None)
    assert branched.extras["cached_epochs"] == shared
    assert_same_run(branched, scratch)
    # Honest cost: cached epochs keep the training seconds measured when they were computed, not the
    # milliseconds it took to restore them. An epoch's seconds also hold this run's own schedule step,
    # timed afresh (a few ms under load), so the match is loose; LRPO's α probe after pretraining is left out.
    probe_epoch = first.get("pretrain_epochs", 0) - 1
    for i in range(shared - 1):
        if i != probe_epoch:
            assert branched.curves["seconds"][i] == pytest.approx(computed_first.curves["seconds"][i], rel=0.2)
    assert len(branched.curves["seconds"]) == scratch.epochs
    uncacheable = method == "curvature" or second.get("interval") == "step"  # values seen decide their lr
    assert run(method, second, small_task, cache).extras["cached_epochs"] == (0 if uncacheable else scratch.epochs)


def test_schedules_driven_by_what_they_see_within_an_epoch_are_not_cached(small_task: Task, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    cache = TrajectoryCache(folder)
    run("curvature", {"epochs": 2}, small_task, cache)
    run("greedylr", {"epochs": 2, "interval": "step"}, small_task, cache)
    assert list(folder.glob("*.pt")) == []  # nothing known in advance to key an entry on
    run("cosine", {"epochs": 2}, small_task, cache)
    assert len(list(folder.glob("*.pt"))) == 2  # the same cache does store a function of the step


def test_damaged_and_half_written_entries_are_recomputed(small_task: Task, tmp_path: Path) -> None:
    cache = TrajectoryCache(tmp_path / "cache")
    reference = run("fixed", {"epochs": 3}, small_task, cache)
    entries = sorted((tmp_path / "cache").glob("*.pt"), key=lambda p: p.stat().st_mtime)
    assert len(entries) == 3
    entries[1].write_bytes(b"not a checkpoint")  # damaged in the middle of the trajectory
    (tmp_path / "cache" / ".deadbeef.123.tmp").write_bytes(b"half")  # a writer died mid-write
    with pytest.warns(UserWarning, match="unreadable entry"):
        again = run("fixed", {"epochs": 3}, small_task, cache)
    assert again.extras["cached_epochs"] == 1  # the prefix before the damaged entry
    assert_same_run(again, reference)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 3  # recomputed and stored again


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_an_entry_is_a_miss_and_nothing_is_trained_from_it(small_task: Task, tmp_path: Path) -> None:
    cache = TrajectoryCache(tmp_path / "cache")
    reference = run("fixed", {"epochs": 3}, small_task, cache)
    entries = sorted((tmp_path / "cache").glob("*.pt"))
    assert len(entries) == 3
    for path in entries:  # the archive stays well-formed: torch.load alone would read a changed weight
        _flip_middle_byte(path)
    with pytest.warns(UserWarning, match="do not match the digest"):
        again = run("fixed", {"epochs": 3}, small_task, cache)
    assert again.extras["cached_epochs"] == 0
    assert_same_run(again, reference)
    # Stored again from the recomputed run, not from the damaged entries: every entry reads back, and a
    # third run takes all of them and is the same run.
    assert sorted((tmp_path / "cache").glob("*.pt")) == entries
    third = run("fixed", {"epochs": 3}, small_task, cache)
    assert third.extras["cached_epochs"] == 3
    assert_same_run(third, reference)


def test_a_checkpoint_with_a_flipped_byte_is_ignored(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    state = {"epoch": 2, "weights": torch.linspace(0, 1, 4096)}
    assert store.save("k", state)
    torch.testing.assert_close(store.load("k")["weights"], state["weights"], rtol=0, atol=0)
    _flip_middle_byte(store.path("k"))
    with pytest.warns(UserWarning, match="ignoring unreadable checkpoint .*do not match the digest"):
        assert store.load("k") is None


def test_least_recently_used_entries_are_evicted(small_task: Task, tmp_path: Path) -> None:
    probe = TrajectoryCache(tmp_path / "probe")
    run("fixed", {"epochs": 1}, small_task, probe)
    entry_size = probe.size_bytes()
    cache = TrajectoryCache(tmp_path / "cache", max_bytes=int(entry_size * 3.5))
    run("fixed", {"epochs": 3, "lr": 0.05}, small_task, cache)
    first_entries = sorted((tmp_path / "cache").glob("*.pt"), key=lambda p: p.stat().st_mtime)
    now = time.time()
    for age, path in zip((300, 200, 100), first_entries, strict=True):  # explicit times, not the clock's resolution
        os.utime(path, (now - age, now - age))
    first = first_entries[0]
    os.utime(first, (now - 10, now - 10))  # the oldest, used again recently: it must survive
    run("fixed", {"epochs": 2, "lr": 0.02}, small_task, cache)
    left = set((tmp_path / "cache").glob("*.pt"))
    assert cache.size_bytes() <= cache.max_bytes and len(left) == 3
    assert first in left and len(set(first_entries) - left) == 2


def test_two_workers_share_one_cache(tmp_path: Path) -> None:
    spec = write_study(
        tmp_path / "s.toml", name="cached", method="lrpo", n_trials=6, sampler="random",
        fixed="pretrain_epochs = 4\nbatch_size = 256",
        search='finetune_epochs = { type = "int", low = 1, high = 3 }\nfinetune_lr = { type = "float", low = 1e-3, high = 1e-2, log = true }',
    )
    url = f"journal:{tmp_path / 's.journal'}"
    proc = run_cli("optimize", str(spec), "--storage", url, "--workers", "2", "--no-progress", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    trials = optuna.load_study(study_name="cached", storage=open_storage(url)).get_trials()
    assert len(trials) == 6 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sum(t.user_attrs["cached_epochs"] >= 4 for t in trials) >= 3  # later trials branch after the shared pretrain
    assert len({round(t.user_attrs["curves"]["val_accuracy"][3], 12) for t in trials}) == 1  # the same epoch 4 everywhere
    assert list((tmp_path / "s.journal.cache").glob("*.pt"))


def test_pruned_trials_record_the_epochs_they_took_from_the_cache(small_task: Task, tmp_path: Path) -> None:
    spec = load_spec(write_study(
        tmp_path / "s.toml", name="pruned", pruning='rule = "quantile"\nwarmup_epochs = 1\nmin_trials = 1\ncost_tolerance = 1.0',
        fixed="epochs = 4\nbatch_size = 256",
    ))
    study = optuna.create_study(directions=["maximize", "minimize"], storage=f"sqlite:///{tmp_path / 's.db'}")
    # A finished competitor no trial can match, so every trial is pruned at epoch 2 (after the warmup).
    study.add_trial(create_trial(
        values=[1.0, 1.0], params={"lr": 0.05}, distributions={"lr": FloatDistribution(0.01, 0.2, log=True)},
        user_attrs={"hyperparameters": {"epochs": 4}, "curves": {"val_accuracy": [1.0] * 4, "seconds": [1.0] * 4}},
    ))
    objective = Objective(spec, small_task, torch.device("cpu"), cache=TrajectoryCache(tmp_path / "cache"))
    for _ in range(2):
        study.enqueue_trial({"lr": 0.05})
        study.optimize(objective, n_trials=1)
    computed, replayed = study.get_trials()[1:]
    assert computed.state == replayed.state == TrialState.PRUNED
    assert computed.user_attrs["pruned_epoch"] == replayed.user_attrs["pruned_epoch"] == 2
    assert computed.user_attrs["cached_epochs"] == 0
    assert replayed.user_attrs["cached_epochs"] == 2  # both epochs it saw came from the first trial's work
    assert replayed.user_attrs["curves"]["val_accuracy"] == computed.user_attrs["curves"]["val_accuracy"]


def test_files_left_by_killed_writers_are_removed(small_task: Task, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    stale, fresh = folder / ".dead.1.tmp", folder / ".busy.2.tmp"
    stale.write_bytes(b"")  # a 0-byte file of a worker killed long ago
    fresh.write_bytes(b"")  # one being written right now by another worker
    old = time.time() - 3600
    os.utime(stale, (old, old))
    run("fixed", {"epochs": 1}, small_task, TrajectoryCache(folder))
    assert not stale.exists() and fresh.exists()


EDITED_TASK = '''
import functools
from torch import nn
from torch.nn import functional as F
from lrpo_study import Task
from tests.user_task import classification


def make_task() -> Task:
    data = classification()
    return Task(build_model=lambda: nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)),
                train=data.train, val=data.val, loss=F.cross_entropy, name="edited")
'''


def test_an_edited_model_or_loss_never_meets_the_old_ones_cached_epochs(tmp_path: Path) -> None:
    module = tmp_path / "edited_task.py"
    # No bytecode cache: an edit of the same size within a second would otherwise run the old code.
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "PYTHONDONTWRITEBYTECODE": "1"}
    url = f"sqlite:///{tmp_path / 's.db'}"  # one storage, one cache beside it

    def study(name: str) -> dict:
        spec = tmp_path / f"{name}.toml"
        spec.write_text(
            f'[study]\nname = "{name}"\nmethod = "fixed"\nn_trials = 1\ntrain_seed = 42\n[task]\nname = "edited_task:make_task"\n'
            '[pruning]\nrule = "none"\n[fixed]\nepochs = 3\nbatch_size = 64\n[search]\nlr = { type = "categorical", choices = [0.05] }\n'
        )
        proc = run_cli("optimize", str(spec), "--storage", url, "--no-progress", "--device", "cpu", env=env)
        assert proc.returncode == 0, proc.stderr
        return optuna.load_study(study_name=name, storage=url).trials[0].user_attrs

    def fresh() -> dict:  # the edited task trained from scratch, no cache
        proc = run_cli("run", "--task", "edited_task:make_task", "--method", "fixed", "--set", "lr=0.05", "--set", "batch_size=64",
                       "--epochs", "3", "--seed", "42", "--json", "--device", "cpu", env=env)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["curves"]

    module.write_text(EDITED_TASK)
    first = study("first")
    assert study("again")["cached_epochs"] == 3  # the same model and loss: every epoch from the cache
    for old, new in [("nn.ReLU()", "nn.Tanh()"),  # the same parameters, another forward
                     ("loss=F.cross_entropy", "loss=functools.partial(F.cross_entropy, label_smoothing=0.1)")]:
        module.write_text(module.read_text().replace(old, new))
        edited = study(new.split("(")[0].replace(".", "-").replace("=", "-").lower())
        assert edited["cached_epochs"] == 0, new
        scratch, timeless = fresh(), ("train_loss", "val_loss", "val_accuracy", "lr")
        assert [edited["curves"][k] for k in timeless] == [scratch[k] for k in timeless] != [first["curves"][k] for k in timeless]


def test_an_edited_model_never_resumes_the_old_ones_checkpoint(tmp_path: Path) -> None:
    from lrpo_study.training.checkpoints import CheckpointStore

    from .user_task import classification

    spec = load_spec(write_task_study(tmp_path / "c.toml", name="ckpt", epochs=3))
    data = classification()
    old = Task(build_model=lambda: torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)),
               train=data.train, val=data.val, name="edited")
    new = dataclasses.replace(old, build_model=lambda: torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)))  # same name, data, parameters
    store = CheckpointStore(tmp_path / "checkpoints")
    study = optuna.create_study(study_name="ckpt", directions=["maximize", "minimize"], storage=f"sqlite:///{tmp_path / 'c.db'}")
    hp = resolve("fixed", {**spec.fixed, "lr": 0.05})
    left = {}  # what a killed worker of the old model left after its first epoch
    train(task=old, method="fixed", hyperparameters=hp, seed=spec.train_seed, on_checkpoint=lambda s: left.setdefault("s", s))
    store.save(Objective(spec, old, torch.device("cpu"), checkpoints=store).checkpoint_key("ckpt", hp), left["s"])
    for task in (new, old):
        study.enqueue_trial({"lr": 0.05})
        study.optimize(Objective(spec, task, torch.device("cpu"), checkpoints=store), n_trials=1)
    edited, same = study.get_trials()
    assert "resumed_from_epoch" not in edited.user_attrs
    assert same.user_attrs["resumed_from_epoch"] == 1  # the old model does resume: the checkpoint was there to find


def test_confirm_branches_wsd_runs_of_one_seed_from_their_shared_trunk(tmp_path: Path) -> None:
    # Three WSD trials, one peak lr and warm-up: with one seed, their confirmations share the trunk
    # until each one's decay starts, and score exactly what confirming without the cache scores.
    spec = tmp_path / "w.toml"
    spec.write_text(
        '[study]\nname = "wsd-confirm"\nmethod = "wsd"\nobjectives = ["best_val_accuracy", "train_seconds"]\n'
        'n_trials = 3\nsampler = "random"\n[task]\nname = "tests.user_task:classification"\n[pruning]\nrule = "none"\n'
        '[fixed]\nbatch_size = 64\nlr = 0.05\nwarmup_steps = 3\n[search]\nepochs = { type = "int", low = 2, high = 5 }\n'
    )
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert cli("optimize", str(spec), "--storage", url, "--no-progress", "--device", "cpu").returncode == 0

    def confirm(*flags: str) -> tuple[str, dict]:
        proc = cli("confirm", "--storage", url, "--best", "3", "--seeds", "7", "--device", "cpu",
                       "--task", "tests.user_task:classification", *flags)
        assert proc.returncode == 0, proc.stderr
        study = optuna.load_study(study_name="wsd-confirm", storage=url)
        return proc.stdout, {k: v["values"] for k, v in study.user_attrs.items() if k.startswith("confirm:")}

    plain_out, plain = confirm("--no-cache")
    cached_out, cached = confirm()
    assert len(plain) == 3 and cached == plain  # bit for bit: test accuracy of every confirmed trial
    assert "trajectory cache" not in plain_out
    line = next(line for line in cached_out.splitlines() if line.startswith("confirm: "))
    served, total = (int(n) for n in line.split()[1:4:2])
    epochs = sum(t.params["epochs"] for t in optuna.load_study(study_name="wsd-confirm", storage=url).trials)
    assert total == epochs and 0 < served < total, line
