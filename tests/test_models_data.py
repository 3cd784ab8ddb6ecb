from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lrpo_study.errors import UserError
from lrpo_study.tasks.data import load_split
from lrpo_study.tasks.fashion_mnist import (
    Dropout,
    bernoulli_keep_mask,
    build_model,
    count_parameters,
)


def test_paper_mlp_has_245290_parameters() -> None:
    assert count_parameters(build_model("mlp")) == 245_290


def test_cnn_runs_on_images() -> None:
    assert build_model("cnn")(torch.zeros(4, 1, 28, 28)).shape == (4, 10)


def test_fast_dropout_matches_torch_dropout_in_distribution() -> None:
    torch.manual_seed(0)
    x = torch.ones(1000, 1000)
    for p in (0.3, 0.4):
        ours, ref = Dropout(p)(x), torch.nn.Dropout(p)(x)
        assert set(ours.unique().tolist()) == set(ref.unique().tolist())
        assert ours.max().item() == pytest.approx(1 / (1 - p))
        assert abs((ours == 0).float().mean() - p) < 3e-3
        assert abs(ours.mean() - ref.mean()) < 5e-3
    mask = bernoulli_keep_mask(torch.Size([64, 64]), 0.5)
    assert mask.dtype == torch.bool and 0.4 < mask.float().mean() < 0.6
    layer = Dropout(0.3).eval()
    assert torch.equal(layer(x), x)


def test_splits_are_seeded_disjoint_and_normalized(data_dir: Path) -> None:
    a = load_split(split="holdout", data_dir=data_dir, seed=3, train_size=1000, val_size=200)
    b = load_split(split="holdout", data_dir=data_dir, seed=3, train_size=1000, val_size=200)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    assert a.test_x is not None and a.test_x.shape == (10000, 1, 28, 28)
    rows = {tuple(r.flatten()[::37].tolist()) for r in a.train_x}
    assert not any(tuple(r.flatten()[::37].tolist()) in rows for r in a.val_x)
    paper = load_split(split="paper", data_dir=data_dir, seed=42)
    assert paper.train_x.shape == (20000, 1, 28, 28) and paper.val_x.shape == (4000, 1, 28, 28)
    assert paper.test_x is None
    assert abs(float(paper.train_x.mean())) < 0.05 and abs(float(paper.train_x.std()) - 1) < 0.05


def test_bad_data_dir_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="FashionMNIST/raw"):
        load_split(data_dir=tmp_path)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)
    with pytest.raises(UserError, match="Fashion-MNIST"):
        load_split(data_dir=tmp_path)


def _truncated_copy(data_dir: Path, tmp_path: Path) -> Path:
    raw = data_dir / "FashionMNIST" / "raw"
    target = tmp_path / "FashionMNIST" / "raw"
    target.mkdir(parents=True)
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (target / name).write_bytes((raw / name).read_bytes())
    (target / "train-images-idx3-ubyte").write_bytes((raw / "train-images-idx3-ubyte").read_bytes()[:100_000])
    return tmp_path


def test_only_a_bad_file_is_blamed_on_the_data(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _truncated_copy(data_dir, tmp_path)
    with pytest.raises(UserError, match="cannot read Fashion-MNIST train files"):
        load_split(data_dir=root, train_size=16, val_size=16)
    # NumPy left half-imported, as an interrupted import leaves it: torchvision's reader needs numpy.prod.
    import numpy

    monkeypatch.delattr(numpy, "prod")
    with pytest.raises(AttributeError, match="prod"):
        load_split(data_dir=data_dir, train_size=16, val_size=16)
