#!/usr/bin/env bash
# Issue 24's question 3 alone: the curvature method on the transformer, its study and its confirmation.
#   OMP_NUM_THREADS=1 results/issue24-curvature.sh > results/issue24-curvature.log 2>&1
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
data=(--data-dir ../shared/data)
shakespeare=sqlite:///results/issue24-curvature.db
$py -m lrpo_study optimize studies/shakespeare-curvature.toml --storage $shakespeare "${data[@]}" --no-progress
$py -m lrpo_study confirm --storage $shakespeare --study shakespeare-curvature --seeds 101,102,103 "${data[@]}"
$py scripts/summarize_studies.py --storage $shakespeare --goal 1.88 --max-epochs 6
