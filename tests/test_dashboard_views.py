"""Every finished trial's figure (an SVG artifact) and note, read back through Optuna's and
optuna-dashboard's APIs and rendered by the real dashboard in headless Chromium."""

from __future__ import annotations

import json
import os
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna.trial import TrialState
from optuna_dashboard import get_note

from lrpo_study.study.storage import open_storage

from .conftest import chromium, cli, dashboard_server

STUDY = """[study]
name = "views"
method = "lrpo"
n_trials = 6
[task]
train_size = 1024
val_size = 256
[pruning]
rule = "quantile"
warmup_epochs = 1
min_trials = 2
[fixed]
pretrain_epochs = 3
finetune_epochs = 2
batch_size = 128
[search]
lr = { type = "categorical", choices = [0.05, 80.0] }
finetune_lr = { type = "float", low = 1e-3, high = 1e-2, log = true }
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("views")
    (tmp / "views.toml").write_text(STUDY)
    url = f"sqlite:///{tmp / 'views.db'}"
    proc = cli("optimize", str(tmp / "views.toml"), "--storage", url, "--no-progress", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "python -m lrpo_study dashboard --storage" in proc.stdout and "--study views" in proc.stdout
    assert cli("report", "--storage", url, "-o", str(tmp / "report.html")).returncode == 0
    return {"url": url, "artifacts": str(tmp / "views.db.artifacts"), "tmp": str(tmp)}


def trial_note(study: optuna.Study, t: optuna.trial.FrozenTrial) -> str:
    return get_note(optuna.Trial(study, t._trial_id))


def test_every_finished_trial_has_its_figure_and_note(made: dict[str, str], tmp_path: Path) -> None:
    storage = open_storage(made["url"])
    study = optuna.load_study(study_name="views", storage=storage)
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(trials) == 6
    diverged = [t for t in trials if t.user_attrs.get("pruned_reason", "").startswith("diverged")]
    assert diverged and any(t.state == TrialState.COMPLETE for t in trials)  # lr 80 diverges, lr 0.05 completes
    store = FileSystemArtifactStore(made["artifacts"])
    for t in trials:
        metas = get_all_artifact_meta(t, storage=storage)
        assert [m.mimetype for m in metas] == ["image/svg+xml"], t.number
        path = tmp_path / f"{t.number}.svg"
        download_artifact(artifact_store=store, artifact_id=metas[0].artifact_id, file_path=str(path))
        svg = ET.parse(path).getroot()
        lines = svg.findall(".//{http://www.w3.org/2000/svg}polyline")
        epochs = t.user_attrs["epochs"]
        assert len(lines) == (4 if epochs else 0), (t.number, epochs)  # lr, train and val loss, val accuracy
        note = trial_note(study, t)
        assert f"## Trial {t.number}: lrpo on fashion-mnist" in note
        assert "lr=" in note and "finetune_lr=" in note and f"epochs: {epochs} of 6" in note
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["pruned_reason"] in note
        else:
            assert f"α = {t.user_attrs['alpha']:.4f}" in note
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.values[0])
    proc = cli("confirm", "--storage", made["url"], "--study", "views", "--best", "1", "--seeds", "5", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    record = optuna.load_study(study_name="views", storage=storage).user_attrs[f"confirm:{best.number}"]
    assert f"**{record['mean']:.4f} ± {record['sd']:.4f}**" in trial_note(study, best)


@pytest.fixture(scope="module")
def dashboard(made: dict[str, str]) -> Iterator[str]:
    with dashboard_server(made["url"]) as base:
        yield base


def _study_id(base: str) -> int:
    studies = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=10))["study_summaries"]
    return int(next(s["study_id"] for s in studies if s["study_name"] == "views"))


def test_chromium_shows_the_trial_figure_and_note_and_wide_comparison_charts(dashboard: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium()
    study_id = _study_id(dashboard)
    try:
        driver.get(f"{dashboard}/dashboard/studies/{study_id}/trials")
        WebDriverWait(driver, 60).until(lambda d: "## Trial" not in d.page_source and "Trial 0: lrpo on fashion-mnist" in d.page_source)
        images = WebDriverWait(driver, 60).until(
            lambda d: [i for i in d.find_elements(By.TAG_NAME, "img") if "/artifacts/" in (i.get_attribute("src") or "")
                       and driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)])
        assert images, "no rendered trial figure"
        driver.save_screenshot(str(tmp_path / "trial.png"))
        driver.get(f"{dashboard}/dashboard/studies/{study_id}")
        areas = WebDriverWait(driver, 60).until(lambda d: [
            float(a.get_attribute("width")) for a in d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .nsewdrag")
            if a.get_attribute("width")])
        charts = driver.execute_script(
            "return [...document.querySelectorAll('.js-plotly-plot')].map(p => [p.id, p.querySelector('.nsewdrag')?.getAttribute('width')])")
        ours = [float(w) for pid, w in charts if "lrpo_study_vs" in (pid or "") and w]
        driver.save_screenshot(str(tmp_path / "study.png"))
        assert len(ours) == 3 and min(ours) >= 300, (charts, areas)  # vs FLOPs, seconds, epochs
    finally:
        driver.quit()


def test_a_torn_or_orphaned_figure_does_not_break_the_dashboard(made: dict[str, str], dashboard: str) -> None:
    """What a worker killed while writing can leave: Optuna's upload_artifact copies the file before it
    records the artifact on the trial, so a death mid-copy leaves an orphaned partial file (no entry);
    a torn file under a recorded entry is the worst case we can fake."""
    storage = open_storage(made["url"])
    trials = optuna.load_study(study_name="views", storage=storage).get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    torn = get_all_artifact_meta(trials[0], storage=storage)[0]
    artifacts = Path(made["artifacts"])
    (artifacts / torn.artifact_id).write_bytes((artifacts / torn.artifact_id).read_bytes()[:40])
    (artifacts / "0b5e4a9e-dead-4bee-8000-000000000000").write_bytes(b"<svg xmlns=")  # the orphan
    study_id = _study_id(dashboard)
    detail = json.load(urllib.request.urlopen(f"{dashboard}/api/studies/{study_id}?after=0", timeout=30))
    assert len(detail["trials"]) == 6
    assert [len(t["artifacts"]) for t in detail["trials"]] == [1] * 6  # the orphan is nobody's entry
    for t, frozen in zip(detail["trials"], trials, strict=True):
        served = urllib.request.urlopen(f"{dashboard}/artifacts/{study_id}/{frozen._trial_id}/{t['artifacts'][0]['artifact_id']}", timeout=10)
        assert served.status == 200


def test_a_postgresql_study_stores_its_figures_where_the_dashboard_finds_them(pg_url: str, tmp_path: Path) -> None:
    # No --artifact-dir and no LRPO_ARTIFACT_DIR: the README's two commands, run from one folder.
    import subprocess
    import sys
    import uuid

    from .conftest import write_study

    name = f"figures-{uuid.uuid4().hex[:8]}"
    spec = write_study(tmp_path / "s.toml", name=name, n_trials=2, fixed="epochs = 2\nbatch_size = 256")
    env = {k: v for k, v in os.environ.items() if k != "LRPO_ARTIFACT_DIR"}
    proc = subprocess.run([sys.executable, "-m", "lrpo_study", "optimize", str(spec), "--storage", pg_url, "--no-progress",
                           "--device", "cpu"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    try:
        assert proc.returncode == 0, proc.stderr
        assert "trial figures are in lrpo_study.artifacts" in proc.stdout
        storage = open_storage(pg_url)
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        metas = [get_all_artifact_meta(t, storage=storage) for t in trials]
        assert [[m.mimetype for m in ms] for ms in metas] == [["image/svg+xml"]] * 2
        assert all((tmp_path / "lrpo_study.artifacts" / ms[0].artifact_id).is_file() for ms in metas)
        with dashboard_server(pg_url, cwd=tmp_path, env=env) as base:  # no --artifact-dir: from the same folder
            studies = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=10))["study_summaries"]
            study_id = next(s["study_id"] for s in studies if s["study_name"] == name)
            for t, ms in zip(trials, metas, strict=True):
                served = urllib.request.urlopen(f"{base}/artifacts/{study_id}/{t._trial_id}/{ms[0].artifact_id}", timeout=10)
                assert served.status == 200 and served.read().startswith(b"<svg")
    finally:
        optuna.delete_study(study_name=name, storage=pg_url)
