"""`report` scores each study by its own first objective, in the HTML and in the dashboard's saved figures."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import optuna
import pytest

from lrpo_study.cli import main

from .conftest import dashboard_server, write_task_study


def test_a_loss_study_on_a_task_with_accuracy_is_reported_by_its_loss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_task_study(tmp_path / "loss.toml", name="by-loss", objectives='["final_val_loss", "train_seconds"]')
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["optimize", str(spec), "--storage", url, "--no-progress", "--device", "cpu"]) == 0
    page = tmp_path / "report.html"
    assert main(["report", "--storage", url, "-o", str(page)]) == 0
    capsys.readouterr()
    study = optuna.load_study(study_name="by-loss", storage=url)
    losses = sorted(t.user_attrs["curves"]["val_loss"][-1] for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    accuracies = {t.user_attrs["best_val_accuracy"] for t in study.trials}
    text = page.read_text()
    assert "final validation loss" in text and "best validation accuracy" not in text
    with dashboard_server(url) as base:
        studies = json.load(urllib.request.urlopen(f"{base}/api/studies"))["study_summaries"]
        study_id = next(s["study_id"] for s in studies if s["study_name"] == "by-loss")
        detail = json.load(urllib.request.urlopen(f"{base}/api/studies/{study_id}?after=0"))
    saved = {g["id"]: json.loads(g["graph_object"]) for g in detail["plotly_graph_objects"]}
    assert set(saved) == {"lrpo_study_vs_train_flops", "lrpo_study_vs_train_seconds", "lrpo_study_vs_epochs"}
    for figure in saved.values():
        assert figure["layout"]["yaxis"]["title"]["text"] == "final validation loss"
        assert figure["layout"]["showlegend"] is True
        trials = next(t for t in figure["data"] if t["name"].endswith(" trials"))
        assert sorted(trials["y"]) == pytest.approx(losses)
        assert not accuracies & set(trials["y"])
    names = re.findall(r'"name":"([^"]+)"', text)
    assert not any(n.startswith("paper") for n in names)  # the paper's accuracies have no place on a loss chart
