#!/usr/bin/env bash
# Issue 25's Fashion-MNIST runs: tuned cosine (issue 16's study file) and PBT into one storage, both
# confirmed with 3 seeds on the test set (cosine's Pareto trials; PBT's 3 best members, each re-trained
# from scratch with its lineage's lr path: the discovered schedule replayed), then the summary with each
# study's compute. One thread per process (the session's other runs shared the 2 cores).
#   OMP_NUM_THREADS=1 results/issue25.sh > results/issue25.log 2>&1
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
data=(--data-dir ../shared/data)
fashion=sqlite:///results/issue25-fashion.db
$py -m lrpo_study optimize studies/fashion16-cosine.toml studies/pbt.toml --storage $fashion "${data[@]}" --no-progress
$py -m lrpo_study confirm --storage $fashion --study fashion16-cosine --seeds 101,102,103 "${data[@]}"
$py -m lrpo_study confirm --storage $fashion --study fashion16-pbt --best 3 --seeds 101,102,103 "${data[@]}"
$py scripts/summarize_studies.py --storage $fashion --goal 0.8742
shakespeare=sqlite:///results/issue25-shakespeare.db
$py -m lrpo_study optimize studies/shakespeare-pbt.toml --storage $shakespeare "${data[@]}" --no-progress
$py -m lrpo_study confirm --storage $shakespeare --study shakespeare-pbt --best 3 --seeds 101,102,103 "${data[@]}"
$py scripts/summarize_studies.py --storage $shakespeare --goal 1.88 --max-epochs 6
$py scripts/pbt_lineages.py --storage $shakespeare --study shakespeare-pbt --top 3 -o results/issue25-shakespeare-lineages.svg
