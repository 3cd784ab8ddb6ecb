from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lrpo_study.data import Split, load_split

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("LRPO_DATA_DIR") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "FashionMNIST" / "raw").is_dir():
        pytest.fail(f"Fashion-MNIST not found under {DATA_DIR}; set LRPO_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def small_split(data_dir: Path) -> Split:
    """A small real subset: 2,048 training and 512 validation images of the holdout split."""
    return load_split(split="holdout", data_dir=data_dir, seed=0, train_size=2048, val_size=512)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lrpo_study", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=REPO, stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
