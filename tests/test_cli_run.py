"""`python -m lrpo_study run` end to end, in real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lrpo_study.training.hyperparameters import METHODS

from .conftest import assert_one_line_error, cli


@pytest.mark.parametrize("method", METHODS)
def test_run_every_method_on_full_paper_data(method: str, data_dir: Path) -> None:
    proc = cli("run", "--method", method, "--epochs", "3", "--data-dir", str(data_dir), "--json", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["method"] == method and out["epochs"] == 3 and out["model_parameters"] == 245_290
    for key in ("best_val_accuracy", "final_val_accuracy"):
        assert 0.5 < out[key] <= 1.0  # 3 epochs on 20k real images learn something
    assert out["final_val_loss"] == out["curves"]["val_loss"][-1]
    for curve in ("val_accuracy", "val_loss", "train_loss", "lr", "seconds"):
        assert len(out["curves"][curve]) == 3, curve
    assert out["train_seconds"] == pytest.approx(sum(out["curves"]["seconds"]))
    assert all(s > 0 for s in out["curves"]["seconds"])
    assert out["hyperparameters"]["lr"] == 0.05 and out["hyperparameters"]["epochs"] == 3


def test_run_prints_table_and_summary(data_dir: Path) -> None:
    proc = cli("run", "--method", "greedylr", "--set", "factor=0.8", "--set", "patience=0", "--epochs", "2",
                   "--data-dir", str(data_dir), "--train-size", "2048", "--val-size", "512")
    assert proc.returncode == 0, proc.stderr
    assert "val_acc" in proc.stdout and "best validation accuracy" in proc.stdout and "training FLOPs" in proc.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["run", "--method", "adam"], ["--method", "adam"]),
        (["run", "--method", "fixed", "--model", "vit"], ["--model", "vit"]),
        (["run", "--method", "fixed", "--set", "colour=red"], ["colour", "allowed"]),
        (["run", "--method", "greedylr", "--set", "factor=1.5"], ["factor", "(0, 1)"]),
        (["run", "--method", "greedylr", "--set", "factor=fast"], ["factor", "number"]),
        (["run", "--method", "lrpo", "--set", "variant=manual", "--set", "alpha=2.5"], ["alpha", "[0.5, 2]"]),
        (["run", "--method", "fixed", "--epochs", "0"], ["epochs", "[1, 100000]"]),
        (["run", "--method", "fixed", "--set", "lr=0"], ["lr", "(0, 1000]"]),
        (["run", "--method", "fixed", "--set", "lr=-1"], ["lr"]),
        (["run", "--method", "fixed", "--epochs", "x"], ["--epochs"]),
        (["run", "--method", "fixed", "--set", "nokey"], ["key=value"]),
        (["run", "--method", "fixed", "--data-dir", "/nonexistent/dir"], ["/nonexistent/dir", "FashionMNIST"]),
        (["run", "--method", "lrpo", "--epochs", "16", "--set", "pretrain_epochs=3", "--set", "finetune_epochs=3"], ["epochs=16"]),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], needles: list[str]) -> None:
    assert_one_line_error(cli(*args), *needles)


def test_unreadable_data_is_one_line(tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"garbage")
    assert_one_line_error(cli("run", "--method", "fixed", "--data-dir", str(tmp_path)), "Fashion-MNIST")
    env_proc = cli("run", "--method", "fixed", env={"LRPO_DATA_DIR": str(tmp_path / "missing")})
    assert_one_line_error(env_proc, "missing")
