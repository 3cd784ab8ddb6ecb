#!/usr/bin/env bash
# Issue 24's runs, one after another (the studies' seconds are an objective: run them on an idle machine).
#   results/issue24.sh > results/issue24.log 2>&1
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
data=(--data-dir ../shared/data)
fashion=sqlite:///results/issue24-fashion.db
shakespeare=sqlite:///results/issue24-shakespeare.db
$py -m lrpo_study optimize studies/fashion16-wsd.toml studies/fashion16-cosine.toml --storage $fashion "${data[@]}" --no-progress
$py -m lrpo_study confirm --storage $fashion --seeds 101,102,103 "${data[@]}"
$py scripts/summarize_studies.py --storage $fashion --goal 0.8742
$py -m lrpo_study optimize studies/shakespeare-wsd.toml --storage $shakespeare "${data[@]}" --no-progress
$py -m lrpo_study confirm --storage $shakespeare --study shakespeare-wsd --seeds 101,102,103 "${data[@]}"
$py -m lrpo_study optimize studies/shakespeare-curvature.toml --storage $shakespeare "${data[@]}" --no-progress
$py -m lrpo_study confirm --storage $shakespeare --study shakespeare-curvature --seeds 101,102,103 "${data[@]}"
$py scripts/summarize_studies.py --storage $shakespeare --goal 1.88 --max-epochs 6
