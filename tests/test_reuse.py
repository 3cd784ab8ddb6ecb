"""Export → load in another process (torch + lrpo_study only), report, dashboard over HTTP and in Chromium."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from lrpo_study.integrations.settings import load_schedule, load_settings

from .conftest import (
    REPO,
    assert_one_line_error,
    chromium,
    cli,
    dashboard_server,
    write_study,
)

SMALL = "batch_size = 128"


@pytest.fixture(scope="session")  # once per worker, even when other modules run in between
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite storage with four small real studies (greedylr, fixed with the baseline, lrpo, cosine)."""
    tmp = tmp_path_factory.mktemp("reuse")
    files = [
        write_study(tmp / "g.toml", name="greedy", method="greedylr", n_trials=3, fixed=f"epochs = 5\npatience = 0\n{SMALL}",
                    search='factor = { type = "float", low = 0.5, high = 0.9 }'),
        write_study(tmp / "f.toml", name="fixed", method="fixed", n_trials=3, fixed="lr = 0.05",
                    search='epochs = { type = "int", low = 2, high = 100 }'),
        write_study(tmp / "l.toml", name="lrpo", method="lrpo", n_trials=2, fixed=f"pretrain_epochs = 3\nfinetune_epochs = 2\n{SMALL}",
                    search='finetune_lr = { type = "float", low = 1e-3, high = 1e-2, log = true }'),
        write_study(tmp / "c.toml", name="cosine", method="cosine", n_trials=2, fixed=f"epochs = 3\n{SMALL}"),
    ]
    url = f"sqlite:///{tmp / 'study.db'}"
    proc = cli("optimize", *map(str, files), "--storage", url, "--no-progress", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    return url


REPLAY = r"""
import json, sys
import torch
import lrpo_study

cases = json.load(open(sys.argv[1]))
out = []
for case in cases:
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))  # not Fashion-MNIST
    opt = torch.optim.SGD(model.parameters(), lr=0.123)
    sched = lrpo_study.load_schedule(case["path"], opt, steps_per_epoch=case["steps_per_epoch"])
    lrs = []
    for losses in case["losses"]:  # the README's plain loop, on the trial's recorded epoch losses
        seen = []
        for _ in range(case["steps_per_epoch"]):
            seen.append(opt.param_groups[0]["lr"])
            loss = model(torch.randn(4, 5)).pow(2).mean()
            sched.observe(loss)
            opt.zero_grad(); loss.backward(); opt.step()
            sched.batch_end()
        lrs.append(sum(seen) / len(seen))
        sched.epoch_end(val_loss=losses["val_loss"], train_loss=losses["train_loss"])
    out.append(lrs)
print(json.dumps({"lrs": out, "imported": sorted(m for m in ("optuna", "lightning", "transformers") if m in sys.modules)}))
"""


def test_exported_schedule_replays_the_trial_lr_curve_without_optuna(storage: str, tmp_path: Path) -> None:
    cases, recorded = [], []
    for name in ("greedy", "lrpo", "cosine"):
        path = tmp_path / f"{name}.json"
        proc = cli("export", "--storage", storage, "--study", name, "--best", "accuracy", "-o", str(path))
        assert proc.returncode == 0, proc.stderr
        settings = load_settings(path)
        trial = optuna.load_study(study_name=name, storage=storage).trials[settings["provenance"]["trial"]]
        curves = trial.user_attrs["curves"]
        assert settings["provenance"]["storage"] == storage and settings["method"] == trial.user_attrs["method"]
        cases.append({
            "path": str(path), "steps_per_epoch": 1024 // settings["hyperparameters"]["batch_size"],
            "losses": [{"train_loss": t, "val_loss": v} for t, v in zip(curves["train_loss"], curves["val_loss"], strict=True)],
        })
        recorded.append(curves["lr"])
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = tmp_path / "replay.py"
    script.write_text(REPLAY)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "cases.json")], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["imported"] == []  # lrpo_study needs torch only
    for got, want in zip(result["lrs"], recorded, strict=True):
        assert len(set(want)) > 1  # each schedule really changed the lr during the trial
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_export_for_transformers_reproduces_a_greedylr_trial_in_the_trainer(storage: str, tmp_path: Path) -> None:
    import torch
    import transformers

    study = optuna.load_study(study_name="greedy", storage=storage)
    trial = max((t for t in study.trials if t.values), key=lambda t: len(set(t.user_attrs["curves"]["lr"])))
    out = tmp_path / "hf.json"
    proc = cli("export", "--storage", storage, "--study", "greedy", "--trial", str(trial.number), "--for", "transformers", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    arguments = json.loads(out.read_text())
    assert arguments["lr_scheduler_type"] == "greedy" and arguments["eval_strategy"] == "epoch"
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], **arguments)
    data = [{"x": torch.zeros(3)}]
    trainer = transformers.Trainer(model=torch.nn.Linear(3, 2), args=args, train_dataset=data, eval_dataset=data)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    assert isinstance(trainer.lr_scheduler, transformers.optimization.GreedyLR)
    assert isinstance(trainer.optimizer, torch.optim.SGD) and trainer.optimizer.defaults["momentum"] == trial.user_attrs["hyperparameters"]["momentum"]
    curves = trial.user_attrs["curves"]
    lrs = []
    for val_loss in curves["val_loss"]:  # the Trainer steps GreedyLR after each epoch's evaluation
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.lr_scheduler.step(val_loss)
    assert len(set(curves["lr"])) > 1
    assert lrs == pytest.approx(curves["lr"], rel=1e-12)
    assert_one_line_error(
        cli("export", "--storage", storage, "--study", "lrpo", "--best", "accuracy", "--for", "transformers", "-o", str(out)),
        "transformers has no LRPO schedule",
    )


def test_export_pareto_and_trial(storage: str, tmp_path: Path) -> None:
    out = tmp_path / "pareto.json"
    assert cli("export", "--storage", storage, "--study", "fixed", "--pareto", "-o", str(out)).returncode == 0
    data = json.loads(out.read_text())
    assert data["schema_version"] == 3 and data["trials"]
    with pytest.raises(ValueError, match="index"):
        load_settings(out, index=99)
    one = tmp_path / "one.json"
    assert cli("export", "--storage", storage, "--study", "fixed", "--trial", "0", "-o", str(one)).returncode == 0
    settings = load_settings(one)
    assert settings["provenance"]["reference"] == "baseline" and settings["hyperparameters"]["epochs"] == 100
    assert_one_line_error(cli("export", "--storage", storage, "--study", "fixed", "--trial", "77", "-o", str(one)), "77")
    assert_one_line_error(cli("export", "--storage", storage, "--study", "nope", "--pareto"), "nope")
    assert_one_line_error(cli("export", "--storage", storage, "--study", "fixed", "-o", str(one)), "--pareto")


def _settings(tmp_path: Path, **changes: object) -> Path:
    base = {
        "schema_version": 1, "method": "fixed",
        "hyperparameters": {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 32, "epochs": 3},
        "objectives": {"best_val_accuracy": 0.8},
        "provenance": {k: None for k in ("study", "trial", "storage", "lrpo_study_version", "torch_version", "model", "split", "seed", "reference")},
    }
    base.update(changes)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(base))
    return path


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"schema_version": 7}, "schema_version"),
        ({"method": "adam"}, "method"),
        ({"extra": 1}, "extra"),
        ({"hyperparameters": {"lr": 0.1}}, "missing key 'batch_size'"),
        ({"hyperparameters": {"lr": "fast", "momentum": 0.9, "weight_decay": 0.0, "batch_size": 32, "epochs": 3}}, "lr"),
        ({"hyperparameters": {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 32, "epochs": 0}}, "epochs"),
        ({"hyperparameters": {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 32, "epochs": 3, "gamma": 1}}, "gamma"),
        ({"objectives": {"x": "high"}}, "objectives"),
        ({"provenance": {}}, "provenance"),
    ],
)
def test_bad_settings_raise_value_error_naming_the_key(changes: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        load_settings(_settings(tmp_path, **changes))


def test_schedules_that_need_more_say_what_is_missing(tmp_path: Path) -> None:
    import torch

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    settings = load_settings(_settings(tmp_path))
    cosine = {**settings, "method": "cosine", "hyperparameters": {**settings["hyperparameters"], "eta_min": 0.0, "warmup_steps": 0}}
    with pytest.raises(ValueError, match="steps_per_epoch"):
        load_schedule(cosine, opt)
    curv = {**settings, "method": "curvature", "hyperparameters": {**settings["hyperparameters"], "lam": 1.0, "estimate_every": 5, "beta": 0.9, "clamp": 0.25, "n_probes": 1}}
    with pytest.raises(ValueError, match="params"):
        load_schedule(curv, opt)
    sched = load_schedule(settings, opt, epochs=7)
    assert opt.param_groups[0]["lr"] == 0.1 and sched.interval == "epoch"


def test_a_bad_settings_file_leaves_the_optimizer_as_it_was(tmp_path: Path) -> None:
    import torch

    good = load_settings(_settings(tmp_path))
    hp = good["hyperparameters"]
    onecycle = {**good, "method": "onecycle", "hyperparameters": {**hp, "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4, "cycle_momentum": True}}
    cases: list[tuple[object, dict]] = [
        (_settings(tmp_path, hyperparameters={"lr": 0.1}), {}),  # a file missing keys
        ({**good, "method": "cosine", "hyperparameters": {**hp, "eta_min": 0.0, "warmup_steps": 0}}, {}),  # no steps_per_epoch
        (good, {"epochs": 0}),  # a bad override
        (good, {"steps_per_epoch": 0}),
        # Fails inside construction, after the lrs were set: Adagrad has no momentum for one-cycle to cycle.
        (onecycle, {"steps_per_epoch": 5}),
    ]
    for bad, kwargs in cases:
        params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
        opt = torch.optim.Adagrad([{"params": params[:1], "lr": 0.3}, {"params": params[1:], "lr": 0.03}])
        before = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        with pytest.raises(ValueError):
            load_schedule(bad, opt, **kwargs)  # type: ignore[arg-type]
        assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == before, (bad, kwargs)


def test_report_has_one_front_per_method_and_the_reference_markers(storage: str, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    proc = cli("report", "--storage", storage, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    names = re.findall(r'"name":"([^"]+)"', page)
    fronts = [n for n in names if n.endswith("Pareto front")]
    expected = {f"{m} Pareto front" for m in ("greedylr (greedy)", "fixed", "lrpo", "cosine")}
    assert set(fronts) == expected and len(fronts) == 3 * len(expected)  # one per panel (FLOPs, seconds, epochs)
    assert any("baseline, lr 0.05 x 100 epochs" in n for n in names)
    assert any(n.startswith("paper LRPO (Table 1)") for n in names)
    assert any(n.startswith("paper fixed-LR baseline (Table 1)") for n in names)
    assert "<script" in page and "plotly" in page.lower() and "Best trial per method" in page
    from optuna_dashboard import get_note

    note = get_note(optuna.load_study(study_name="lrpo", storage=storage))
    assert "lrpo" in note and "Pareto" in note


@pytest.fixture(scope="module")
def dashboard(storage: str) -> Iterator[str]:
    with dashboard_server(storage) as base:
        yield base


def test_dashboard_serves_the_studies_over_http(dashboard: str) -> None:
    studies = json.load(urllib.request.urlopen(f"{dashboard}/api/studies", timeout=10))["study_summaries"]
    by_name = {s["study_name"]: s for s in studies}
    assert {"greedy", "fixed", "lrpo", "cosine"} <= set(by_name)
    detail = json.load(urllib.request.urlopen(f"{dashboard}/api/studies/{by_name['fixed']['study_id']}", timeout=10))
    assert len(detail["trials"]) == 3
    assert any(a["key"] == "reference" for t in detail["trials"] for a in t["user_attrs"])


def test_chromium_renders_the_pareto_front(dashboard: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    studies = json.load(urllib.request.urlopen(f"{dashboard}/api/studies", timeout=10))["study_summaries"]
    study_id = next(s["study_id"] for s in studies if s["study_name"] == "fixed")
    driver = chromium()
    try:
        driver.get(f"{dashboard}/dashboard/studies/{study_id}")
        plot = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "graph-pareto-front"))
        points = WebDriverWait(driver, 60).until(lambda d: plot.find_elements(By.CSS_SELECTOR, ".scatterlayer .point"))
        assert len(points) >= 1
        driver.save_screenshot(str(tmp_path / "dashboard.png"))
    finally:
        driver.quit()


def test_confirm_retrains_with_fresh_seeds_on_the_test_set(storage: str, tmp_path: Path) -> None:
    proc = cli("confirm", "--storage", storage, "--study", "cosine", "--best", "1", "--seeds", "1,2", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "test_accuracy" in proc.stdout
    study = optuna.load_study(study_name="cosine", storage=storage)
    records = {k: v for k, v in study.user_attrs.items() if k.startswith("confirm:")}
    assert len(records) == 1
    record = next(iter(records.values()))
    assert record["metric"] == "test_accuracy"
    assert record["seeds"] == [1, 2] and len(record["values"]) == 2
    assert all(0.3 < a <= 1.0 for a in record["values"])
    assert record["values"][0] != record["values"][1]  # really different seeds
    page = tmp_path / "report.html"
    assert cli("report", "--storage", storage, "-o", str(page)).returncode == 0
    shown = f"{record['mean']:.4f} ± {record['sd']:.4f}"
    assert shown in page.read_text().split("Confirmed on the test set")[1]
    from optuna_dashboard import get_note

    assert shown in get_note(optuna.load_study(study_name="cosine", storage=storage)).split("Confirmed on the test set")[1]
    summary = subprocess.run([sys.executable, "scripts/summarize_studies.py", "--storage", storage],
                             capture_output=True, text=True, timeout=120, cwd=REPO)
    assert summary.returncode == 0, summary.stderr
    assert f"| cosine | {next(iter(records)).split(':')[1]} |" in summary.stdout
    assert shown in summary.stdout
    assert_one_line_error(cli("confirm", "--storage", storage, "--seeds", "a,b"), "--seeds")


def test_confirm_refuses_the_study_s_own_training_seed(storage: str) -> None:
    before = optuna.load_study(study_name="cosine", storage=storage).user_attrs
    proc = cli("confirm", "--storage", storage, "--study", "cosine", "--seeds", "42,43,44", "--device", "cpu")
    assert_one_line_error(proc, "--seeds 42,43,44", "'cosine'", "training seed 42")
    assert optuna.load_study(study_name="cosine", storage=storage).user_attrs == before  # nothing trained or written


def test_confirm_never_imports_code_named_only_by_the_storage(tmp_path: Path) -> None:
    from lrpo_study.study.storage import open_storage
    from lrpo_study.views import record

    from .conftest import write_task_study

    url = f"journal:{tmp_path / 'shared.journal'}"
    spec = write_task_study(tmp_path / "t.toml", name="mine", n_trials=1, epochs=1)
    assert cli("optimize", str(spec), "--storage", url, "--no-progress", "--device", "cpu").returncode == 0
    # Untouched: the storage names the user's factory, which confirm imports only when its runner names it too.
    assert_one_line_error(cli("confirm", "--storage", url, "--seeds", "7"), "'tests.user_task:classification'", "--task")
    marker = tmp_path / "ran"
    study = optuna.load_study(study_name="mine", storage=open_storage(url))
    stored = study.user_attrs[record.SPEC]
    for tampered in ({"name": "os:system", "command": f"touch {marker}"},
                     {"name": "mine", "loop": "os:system", "command": f"touch {marker}"}):
        study.set_user_attr(record.SPEC, {**stored, "task": tampered})  # what anyone who can write the journal can do
        assert_one_line_error(cli("confirm", "--storage", url, "--seeds", "7"), "'os:system'", "code named by the storage")
        assert_one_line_error(cli("confirm", "--storage", url, "--seeds", "7", "--task", "tests.user_task:classification"),
                              "'os:system'", "you named 'tests.user_task:classification'")
        cli("report", "--storage", url, "-o", str(tmp_path / "r.html"))
        cli("export", "--storage", url, "--study", "mine", "--trial", "0", "-o", str(tmp_path / "s.json"))
        assert not marker.exists()
    assert (tmp_path / "r.html").exists() and (tmp_path / "s.json").exists()  # they ran, and imported nothing


def test_load_schedule_and_load_optimizer_take_one_trial_of_a_pareto_file(storage: str, tmp_path: Path) -> None:
    import warnings

    import torch

    from lrpo_study import load_optimizer

    one = tmp_path / "one.json"
    assert cli("export", "--storage", storage, "--study", "greedy", "--trial", "0", "-o", str(one)).returncode == 0
    first = {k: v for k, v in json.loads(one.read_text()).items() if k != "schema_version"}
    second = {**first, "hyperparameters": {**first["hyperparameters"], "lr": 0.0123, "momentum": 0.5, "nesterov": True,
                                           "weight_decay": 3e-4}}
    pareto = tmp_path / "pareto.json"
    pareto.write_text(json.dumps({"schema_version": 3, "trials": [first, second]}))
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"index=0\.\.1"):
        load_schedule(pareto, torch.optim.SGD(model.parameters(), lr=1.0))
    optimizer = load_optimizer(pareto, model.parameters(), index=1)
    group = optimizer.param_groups[0]
    assert type(optimizer) is torch.optim.SGD
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.0123, 0.5, True, 3e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the tuned optimizer: nothing to warn about
        schedule = load_schedule(pareto, optimizer, index=1)
    assert schedule.get_last_lr() == [0.0123]
    assert load_optimizer(pareto, model.parameters(), index=0).param_groups[0]["lr"] == first["hyperparameters"]["lr"]
    # Only the lr travels in load_schedule: another optimizer is said, naming what differs.
    with pytest.warns(UserWarning, match=r"AdamW, tuned with SGD"):
        load_schedule(pareto, torch.optim.AdamW(model.parameters()), index=1)
    with pytest.warns(UserWarning, match=r"momentum=0\.9, tuned with 0\.5"):
        load_schedule(pareto, torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9, nesterov=True, weight_decay=3e-4), index=1)
    with pytest.raises(ValueError, match="index"):
        load_schedule(load_settings(pareto, index=0), optimizer, index=1)
