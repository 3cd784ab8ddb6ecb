"""Every study file in studies/ is valid; bad ones fail with one line and create nothing."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from lrpo_study.study.spec import load_spec

from .conftest import REPO, assert_one_line_error, cli

GOOD = '[study]\nname = "bad"\nmethod = "fixed"\nn_trials = 1\n\n[fixed]\nepochs = 2\n\n[search]\nlr = { type = "float", low = 0.01, high = 0.1 }\n'


@pytest.mark.parametrize("path", sorted((REPO / "studies").glob("*.toml")) + [REPO / "lrpo_study" / "cli" / "default_study.toml"], ids=lambda p: p.name)
def test_shipped_study_files_are_valid(path: Path) -> None:
    spec = load_spec(path)
    assert spec.search and spec.n_trials >= 1


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (GOOD.replace("[fixed]", "[fixed"), ["TOML syntax"]),
        (GOOD.replace('n_trials = 1', 'n_trials = 1\ncolour = "red"'), ["study.colour", "unknown key"]),
        (GOOD.replace("n_trials = 1", 'n_trials = "many"'), ["study.n_trials", "int"]),
        (GOOD.replace("low = 0.01, high = 0.1", "low = 0.5, high = 0.1"), ["search.lr", "low must be <= high"]),
        (GOOD.replace("low = 0.01, high = 0.1 }", "low = 0.0, high = 0.1, log = true }"), ["search.lr", "(0, 1000]"]),
        (GOOD.replace('name = "bad"', 'name = "bad"\nsampler = "bayes"'), ["study.sampler", "bayes"]),
        (GOOD + '\n[pruning]\nrule = "median"\n', ["pruning.rule", "median"]),
        (GOOD.replace('name = "bad"', 'name = "bad"\nobjectives = ["speed"]'), ["study.objectives", "speed"]),
        (GOOD.replace('method = "fixed"', 'method = "adam"'), ["study.method", "adam"]),
        (GOOD.replace("epochs = 2", "epochs = 0"), ["fixed.epochs", "[1, 100000]"]),
        (GOOD.replace("epochs = 2", "momentum = true"), ["fixed.momentum", "number"]),
        (GOOD.replace("lr = {", "factor = {"), ["search.factor", "unknown hyperparameter"]),
        (GOOD.replace('type = "float"', 'type = "complex"'), ["search.lr.type"]),
        (GOOD.replace("low = 0.01", "lo = 0.01"), ["search.lr.lo"]),
    ],
)
def test_bad_study_file_is_one_line_and_creates_nothing(text: str, needles: list[str], tmp_path: Path) -> None:
    study = tmp_path / "bad.toml"
    study.write_text(text)
    db = tmp_path / "study.db"
    proc = cli("optimize", str(study), "--storage", f"sqlite:///{db}", "--no-progress")
    assert_one_line_error(proc, str(study), *needles)
    assert not db.exists() or optuna.get_all_study_names(f"sqlite:///{db}") == []


def test_second_file_bad_means_first_does_not_run(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(GOOD.replace('"bad"', '"good"'))
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("epochs = 2", "epochs = -1"))
    db = tmp_path / "study.db"
    assert_one_line_error(cli("optimize", str(good), str(bad), "--storage", f"sqlite:///{db}"), "bad.toml")
    assert not db.exists()
