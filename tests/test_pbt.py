"""Population-based training: a population on an Optuna storage, exploit and explore through the
trajectory cache, resume without a lost or doubled generation, and the winner's lineage as a schedule."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState

from lrpo_study import load_schedule, load_settings
from lrpo_study.schedules import PiecewiseLR, make_schedule, piecewise_lr
from lrpo_study.study.storage import open_storage

from .conftest import REPO, assert_one_line_error, cli, run_cli, wait_until

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def write_pbt_study(path: Path, *, name: str = "pbt", pbt: str = "population = 4\ninterval = 2", epochs: int = 6,
                    task: str = 'name = "tests.user_task:classification"', extra: str = "") -> Path:
    path.write_text(
        f'[study]\nname = "{name}"\nmethod = "pbt"\nobjectives = ["final_val_loss", "train_seconds"]\n{extra}\n'
        f"[task]\n{task}\n[pbt]\n{pbt}\n[fixed]\nepochs = {epochs}\nbatch_size = 64\n"
        '[search]\nlr = { type = "float", low = 0.001, high = 0.5, log = true }\n'
    )
    return path


def generations(study: optuna.Study) -> dict[tuple[int, int], list[FrozenTrial]]:
    found: dict[tuple[int, int], list[FrozenTrial]] = {}
    for t in study.get_trials(states=FINISHED):
        found.setdefault((t.user_attrs["pbt_member"], t.user_attrs["pbt_generation"]), []).append(t)
    return found


def check_lineages(study: optuna.Study, *, population: int, n_generations: int, interval: int) -> dict[tuple[int, int], FrozenTrial]:
    """Every generation of every member finished exactly once, each starting from its parent's end."""
    found = generations(study)
    assert sorted(found) == [(m, g) for m in range(population) for g in range(n_generations)]
    assert all(len(ts) == 1 for ts in found.values()), {k: [t.number for t in ts] for k, ts in found.items() if len(ts) > 1}
    gens = {k: ts[0] for k, ts in found.items()}
    for (member, g), t in gens.items():
        a = t.user_attrs
        assert a["pbt_start_epoch"] == g * interval
        assert t.params["lr"] == a["pbt_lrs"][-1] and len(a["pbt_lrs"]) == g + 1
        np.testing.assert_allclose(a["curves"]["lr"], np.repeat(a["pbt_lrs"], interval), rtol=1e-12)
        if g == 0:
            assert a["pbt_parent"] is None and not a["pbt_exploited"]
            continue
        parent = study.trials[a["pbt_parent"]]
        assert parent.state in FINISHED and parent.user_attrs["pbt_generation"] == g - 1
        assert a["pbt_lrs"][:-1] == parent.user_attrs["pbt_lrs"]
        assert a["pbt_exploited"] == (parent.user_attrs["pbt_member"] != member)
        # The parent's state came from the trajectory cache, its curves with it: nothing retrained (more
        # epochs cached when an explored lr was clipped to a bound: another member trained this same lineage);
        # or, for a retried generation, from its interrupted run's checkpoint, which holds that same state.
        assert a["cached_epochs"] >= g * interval or a.get("resumed_from_epoch", 0) >= g * interval
        assert a["curves"]["val_loss"][: g * interval] == parent.user_attrs["curves"]["val_loss"]
    return gens


def test_piecewise_schedule_equals_its_pure_function_with_sgd_adamw_and_several_groups() -> None:
    lrs, piece_epochs, steps_per_epoch = [0.1, 0.05, 0.2, 0.01], 2, 3
    for make in (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), lambda ps: torch.optim.AdamW(ps, lr=0.1)):
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
        optimizer = make([{"params": model[0].parameters()}, {"params": model[1].parameters(), "lr": 0.3}])
        schedule = make_schedule("pbt", optimizer, {"lrs": lrs, "piece_epochs": piece_epochs, "epochs": 8}, total_steps=24)
        assert isinstance(schedule, PiecewiseLR)
        for step in range(30):  # past the end the last piece holds
            want = piecewise_lr(step, lrs=lrs, piece_steps=piece_epochs * steps_per_epoch)
            assert optimizer.param_groups[0]["lr"] == want
            assert math.isclose(optimizer.param_groups[1]["lr"], 3 * want, rel_tol=1e-12)
            optimizer.step()
            schedule.step()


@pytest.mark.parametrize(("lrs", "why"), [([], "non-empty"), ([0.1, 0.0], "lrs must be"), ("0.1", "lrs must be"), ([0.1, True], "lrs must be")])
def test_piecewise_lrs_are_checked(lrs: object, why: str) -> None:
    from lrpo_study.training.hyperparameters import resolve

    with pytest.raises(ValueError, match=why):
        resolve("pbt", {"lrs": lrs, "piece_epochs": 1})


def test_a_population_runs_with_two_workers_on_a_journal_and_its_winner_replays_anywhere(tmp_path: Path) -> None:
    spec = write_pbt_study(tmp_path / "pbt.toml")
    url = f"journal:{tmp_path / 'pbt.journal'}"
    proc = run_cli("optimize", str(spec), "--storage", url, "--workers", "2", "--no-progress", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="pbt", storage=open_storage(url))
    gens = check_lineages(study, population=4, n_generations=3, interval=2)
    assert len(study.get_trials(states=FINISHED)) == 12

    # The worst member of generation 0 has finished when its generation 1 starts, with most of the others:
    # it is in the bottom quantile and exploits; its first steps train the explored lr, not the parent's.
    exploits = [t for t in gens.values() if t.user_attrs["pbt_exploited"]]
    assert exploits
    for t in exploits:
        a = t.user_attrs
        parent = study.trials[a["pbt_parent"]]
        first_epoch_lr = a["curves"]["lr"][a["pbt_start_epoch"]]  # the mean over that epoch's steps
        assert first_epoch_lr == pytest.approx(a["pbt_lrs"][-1], rel=1e-12)
        assert a["pbt_lrs"][-1] != parent.user_attrs["pbt_lrs"][-1]

    # The report shows the final members, each at the whole population's computed epochs.
    from lrpo_study.views.report import best_table, collect

    [pbt_study] = collect(open_storage(url))
    computed = sum(t.user_attrs["epochs"] - t.user_attrs["cached_epochs"] for t in study.get_trials(states=FINISHED))
    assert sorted(t.number for t in pbt_study.trials) == sorted(t.number for (_, g), t in gens.items() if g == 2)
    assert best_table([pbt_study])[0]["epochs"] == computed <= 4 * 6  # each epoch once: the cached ones are not counted

    winner = min((t for (_, g), t in gens.items() if g == 2), key=lambda t: t.user_attrs["curves"]["val_loss"][-1])

    # optimize's table, export --pareto and the trial figure show the population as it ended: final members only,
    # each with its lineage's lr path, and the lr drawn as the steps it is.
    final = {t.number for (_, g), t in gens.items() if g == 2}
    table = proc.stdout.split("Pareto trials of pbt")[1].split("\n\n")[0]
    rows = [line.split() for line in table.splitlines()[2:] if line.strip() and line.split()[0].isdigit()]
    assert rows and {int(row[0]) for row in rows} <= final and "of 4 final members of 12 complete" in table
    for row in rows:
        lrs = study.trials[int(row[0])].user_attrs["pbt_lrs"]
        assert " → ".join(f"{lr:.4g}" for lr in lrs) in table
    pareto = tmp_path / "pareto.json"
    assert run_cli("export", "--storage", url, "--study", "pbt", "--pareto", "-o", str(pareto)).returncode == 0
    exported = {t["provenance"]["trial"] for t in json.loads(pareto.read_text())["trials"]}
    assert exported and exported <= final and exported == {int(row[0]) for row in rows}
    from optuna.artifacts import get_all_artifact_meta

    [figure_meta] = get_all_artifact_meta(winner, storage=open_storage(url))  # the figure optimize published
    svg = ElementTree.parse(tmp_path / "pbt.journal.artifacts" / figure_meta.artifact_id).getroot()
    lr_line = svg.findall(".//{http://www.w3.org/2000/svg}polyline")[0].get("points", "").split()
    assert len(lr_line) == 3 * 6 - 2  # each of the 6 epochs a point, each change of epoch a vertical step
    xs_ys = [tuple(map(float, p.split(","))) for p in lr_line]
    assert all(a[0] == b[0] or a[1] == b[1] for a, b in zip(xs_ys, xs_ys[1:], strict=False))  # no diagonal

    # results/README's lineage table and figure: the final generation's best first, each with its lr path.
    lineages = subprocess.run([sys.executable, "scripts/pbt_lineages.py", "--storage", url, "--study", "pbt", "--top", "2",
                               "-o", str(tmp_path / "lineages.svg")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert lineages.returncode == 0, lineages.stderr
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lineages.stdout.splitlines() if line[:3].strip("| ").isdigit()]
    assert [row[0] for row in rows][:1] == [str(winner.number)] and len(rows) == 2
    assert [float(lr) for lr in rows[0][3].split(", ")] == pytest.approx(winner.user_attrs["pbt_lrs"], rel=1e-2)
    figure = ElementTree.parse(tmp_path / "lineages.svg").getroot()
    assert len(figure.findall("{http://www.w3.org/2000/svg}svg")) == 2  # one trial figure per winner, stacked

    settings = tmp_path / "winner.json"
    assert run_cli("export", "--storage", url, "--study", "pbt", "--trial", str(winner.number), "-o", str(settings)).returncode == 0
    replay = run_cli("run", "--settings", str(settings), "--task", "tests.user_task:classification", "--device", "cpu", "--json")
    assert replay.returncode == 0, replay.stderr
    summary = json.loads(replay.stdout)
    lineage = np.repeat(winner.user_attrs["pbt_lrs"], 2)
    np.testing.assert_allclose(summary["curves"]["lr"], lineage, rtol=1e-12)
    # From scratch, without the cache's hand-overs, the lineage trains to the very same model.
    assert summary["final_val_loss"] == winner.user_attrs["curves"]["val_loss"][-1]

    # In a plain loop: the lineage's lr at every step.
    steps_per_epoch = winner.user_attrs["steps_per_epoch"]
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
    schedule = load_schedule(load_settings(settings), optimizer, steps_per_epoch=steps_per_epoch)
    for step in range(6 * steps_per_epoch):
        assert optimizer.param_groups[0]["lr"] == lineage[step // steps_per_epoch]
        optimizer.step()
        schedule.batch_end()


def test_resuming_after_ctrl_c_continues_the_same_population(tmp_path: Path) -> None:
    # Larger data than the default so that a generation is still training when the signal comes.
    spec = write_pbt_study(tmp_path / "pbt.toml", name="pbt-resume", pbt="population = 3\ninterval = 2",
                           task='name = "tests.user_task:classification"\nn = 12000')
    url = f"sqlite:///{tmp_path / 'pbt.db'}"
    args = ("optimize", str(spec), "--storage", url, "--no-progress", "--device", "cpu")
    proc = subprocess.Popen([sys.executable, "-m", "lrpo_study", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        wait_until(lambda: any(t.user_attrs.get("pbt_generation") == 1 for t in optuna.load_study(
            study_name="pbt-resume", storage=url).get_trials(states=(TrialState.RUNNING,))),
            timeout=120, what="the population's second generation", interval=0.2, alive=proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    study = optuna.load_study(study_name="pbt-resume", storage=url)
    interrupted = study.get_trials(states=(TrialState.FAIL,))
    assert len(interrupted) == 1 and "pbt_member" in interrupted[0].user_attrs

    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "re-queued member" in resumed.stderr
    study = optuna.load_study(study_name="pbt-resume", storage=url)
    gens = check_lineages(study, population=3, n_generations=3, interval=2)
    for t in interrupted:  # trained again as the same generation, from the same parent
        retry = gens[(t.user_attrs["pbt_member"], t.user_attrs["pbt_generation"])]
        assert retry.user_attrs["retried_from"] == t.number
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


@pytest.mark.parametrize(("pbt", "extra_args", "needles"), [
    ("population = 1\ninterval = 2", (), ("pbt.population", "must be >= 2", "got 1")),
    ("population = 4\ninterval = 2\nquantile = 0.6", (), ("pbt.quantile", "(0, 0.5]", "0.6")),
    ("population = 4\ninterval = 2\nquantile = 0.0", (), ("pbt.quantile", "(0, 0.5]")),
    ("population = 4\ninterval = 2\nfactors = [0.8, 0.0]", (), ("pbt.factors", "> 0")),
    ("population = 4\ninterval = 4", (), ("pbt.interval", "must divide the epochs (6)", "got 4")),
    ("population = 4", (), ("pbt.interval", "required")),
    ("population = 4\ninterval = 2\nresample_probability = 1.5", (), ("pbt.resample_probability", "[0, 1]")),
    ("population = 4\ninterval = 2", ("--n-trials", "5"), ("--n-trials does not apply", "12 trials")),
    ("population = 4\ninterval = 2", ("--no-cache",), ("needs the trajectory cache",)),
])
def test_bad_population_settings_are_one_line(tmp_path: Path, pbt: str, extra_args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    spec = write_pbt_study(tmp_path / "bad.toml", pbt=pbt)
    proc = cli("optimize", str(spec), "--storage", f"sqlite:///{tmp_path / 'bad.db'}", "--no-progress", *extra_args)
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "bad.db").exists() or not optuna.get_all_study_names(f"sqlite:///{tmp_path / 'bad.db'}")


def test_a_pbt_study_searches_lr_only_and_does_not_prune(tmp_path: Path) -> None:
    spec = write_pbt_study(tmp_path / "s.toml")
    spec.write_text(spec.read_text() + 'momentum = { type = "float", low = 0.5, high = 0.9 }\n')
    assert_one_line_error(cli("optimize", str(spec), "--storage", f"sqlite:///{tmp_path / 's.db'}"),
                          "search.momentum", "searches lr only")
    spec = write_pbt_study(tmp_path / "p.toml")
    spec.write_text(spec.read_text().replace("[task]", '[pruning]\nrule = "quantile"\n[task]'))
    assert_one_line_error(cli("optimize", str(spec), "--storage", f"sqlite:///{tmp_path / 'p.db'}"),
                          "pruning.rule", "do not prune")


RELEASED_TOGETHER = r"""
import os, sys, time
# Everything optimize imports, before the release: nothing left to skew the two processes apart.
import numpy, torch._dynamo, lrpo_study.study.runner, lrpo_study.cli.optimize, tests.user_task
from lrpo_study.cli import main
ready, go = sys.argv[1], sys.argv[2]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
sys.exit(main(sys.argv[3:]))
"""


def _fail_one_generation_zero(spec_path: Path, url: str) -> None:
    """A population whose member 0 failed in generation 0 and nothing retries it yet (a resume's repair does)."""
    from lrpo_study.study.runner import prepare_study
    from lrpo_study.study.spec import load_spec

    study = prepare_study(load_spec(spec_path), open_storage(url))
    trial = study.ask()  # pops member 0's generation 0
    study.tell(trial, state=TrialState.FAIL)


@pytest.mark.parametrize("scenario", ["fresh", "resume"])
@pytest.mark.parametrize("backend", ["journal", "postgres"])
def test_two_processes_released_at_once_train_each_generation_once(
    backend: str, scenario: str, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    """Studies (3; LRPO_RACE_REPEATS sets how many), each with two optimize processes released at the same
    instant (seeding a fresh population, or repairing a failed generation on resume): no (member, generation)
    trained twice. Every repetition is two processes importing torch: the suite runs 3 of them."""
    import uuid

    go = tmp_path / "go"
    runs = []
    repeats = int(os.environ.get("LRPO_RACE_REPEATS", "3"))
    for attempt in range(repeats):
        name = f"pbt-race-{uuid.uuid4().hex[:8]}"
        spec = write_pbt_study(tmp_path / f"{name}.toml", name=name, pbt="population = 3\ninterval = 1", epochs=2,
                               task='name = "tests.user_task:classification"\nn = 256')
        url = f"journal:{tmp_path / f'{name}.journal'}" if backend == "journal" else request.getfixturevalue("pg_url")
        if scenario == "resume":
            _fail_one_generation_zero(spec, url)
        procs = [subprocess.Popen(
            [sys.executable, "-c", RELEASED_TOGETHER, str(tmp_path / f"{name}.{i}.ready"), str(go), "optimize", str(spec),
             "--storage", url, "--no-progress", "--device", "cpu", "--cache-dir", str(tmp_path / f"{name}.cache")],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ) for i in range(2)]
        runs.append((attempt, name, url, procs))
    try:
        wait_until(lambda: len(list(tmp_path.glob("*.ready"))) == 2 * repeats
                   or any(p.poll() is not None for *_, ps in runs for p in ps), timeout=60, what="every process imported",
                   interval=0.01)
        go.touch()
        for attempt, name, url, procs in runs:
            errors = [p.communicate(timeout=240)[1] for p in procs]
            assert all(p.returncode == 0 for p in procs), (attempt, errors)
            study = optuna.load_study(study_name=name, storage=open_storage(url))
            check_lineages(study, population=3, n_generations=2, interval=1)  # no (member, generation) twice
    finally:
        for _, name, url, procs in runs:
            for p in procs:
                p.kill()
            if backend == "postgres":
                optuna.delete_study(study_name=name, storage=url)


def test_a_generation_interrupted_after_planning_its_successor_is_retried_before_it(tmp_path: Path) -> None:
    # The window between a generation's last write of curves and Optuna marking it COMPLETE: its successor is
    # already queued, naming it as parent, when the trial ends FAIL (a Ctrl-C just then).
    from lrpo_study.study import pbt
    from lrpo_study.study.objective import Objective
    from lrpo_study.study.runner import prepare_study
    from lrpo_study.study.spec import load_spec
    from lrpo_study.tasks import load_task
    from lrpo_study.training.cache import TrajectoryCache

    path = write_pbt_study(tmp_path / "pbt.toml", name="pbt-window", pbt="population = 2\ninterval = 1", epochs=3,
                           task='name = "tests.user_task:classification"\nn = 256')
    url = f"sqlite:///{tmp_path / 'pbt.db'}"
    spec = load_spec(path)
    prepare_study(spec, open_storage(url))
    study = optuna.load_study(study_name="pbt-window", storage=open_storage(url), sampler=pbt.LineageSampler())
    task = load_task(spec.task, spec.task_options, seed=spec.train_seed)
    objective = pbt.PBTObjective(spec, Objective(spec, task, torch.device("cpu"), cache=TrajectoryCache(f"{url[10:]}.cache")).run)
    study.optimize(objective, n_trials=2)  # generation 0 of both members; each plans its generation 1
    trial = study.ask()  # member 0's generation 1 ...
    objective(trial)  # ... trains, stores its curves and plans generation 2 with itself as parent ...
    study.tell(trial, state=TrialState.FAIL)  # ... and is never marked COMPLETE
    premature = [t for t in study.get_trials(states=(TrialState.WAITING,)) if t.user_attrs["pbt_parent"] == trial.number]
    assert premature and premature[0].user_attrs["pbt_generation"] == 2

    resumed = run_cli("optimize", str(path), "--storage", url, "--no-progress", "--device", "cpu")
    assert resumed.returncode == 0, resumed.stderr
    study = optuna.load_study(study_name="pbt-window", storage=url)
    gens = check_lineages(study, population=2, n_generations=3, interval=1)  # every parent a finished trial
    retry = gens[(0, 1)]
    assert retry.user_attrs["retried_from"] == trial.number
    assert gens[(0, 2)].datetime_start > retry.datetime_complete  # the successor waited for its predecessor
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
