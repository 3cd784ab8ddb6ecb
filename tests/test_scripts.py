"""Benchmark scripts run end to end at small sizes and check what they claim (their numbers live in results/)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .conftest import REPO


def test_bench_cache_agrees_trial_for_trial_and_computes_fewer_epochs(data_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "scripts/bench_cache.py", "--n-trials", "4", "--train-size", "1024", "--val-size", "256",
         "--device", "cpu", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].endswith("identical=True"), proc.stdout
    computed = dict(re.findall(r"(without cache|with cache): .*epochs computed\s+(\d+)", proc.stdout))
    in_results = re.findall(r"epochs in results\s+(\d+)", proc.stdout)
    assert len(set(in_results)) == 1, proc.stdout  # both arms trained the same schedules
    # The paper's 10-epoch pretrain is enqueued first; later trials branch from its prefix.
    assert int(computed["with cache"]) < int(computed["without cache"]) == int(in_results[0]), proc.stdout
