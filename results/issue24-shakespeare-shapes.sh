#!/usr/bin/env bash
# Issue 24, question 1's second half on Tiny Shakespeare, controlled: the same WSD run (nanoGPT's recipe,
# peak 2e-3, 100 warm-up steps, floor 0.1 x peak, 10 epochs = nanoGPT's 2,000 iterations) with a 20 %
# cool-down (Hagele et al.'s) in each of the three shapes, seeds 42, 43, 44, scored on the test slice.
#   OMP_NUM_THREADS=1 results/issue24-shakespeare-shapes.sh > results/issue24-shakespeare-shapes.log 2>&1
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
out=results/issue24-shakespeare-shapes.jsonl
: > $out
for shape in linear cosine 1-sqrt; do
  for seed in 42 43 44; do
    $py -m lrpo_study run --task shakespeare-char --method wsd --epochs 10 --seed $seed --test --json \
      --set lr=2e-3 --set optimizer=adamw --set beta2=0.99 --set weight_decay=0.1 --set grad_clip=1.0 \
      --set batch_size=12 --set warmup_steps=100 --set min_lr_ratio=0.1 --set decay_fraction=0.2 \
      --set decay_shape=$shape --data-dir ../shared/data --device cpu >> $out
  done
done
$py - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
print("| decay shape | val loss (mean) | test loss, mean ± sd (seeds 42, 43, 44) | train s (mean) |")
print("|---|---|---|---|")
for shape in ("linear", "cosine", "1-sqrt"):
    rs = [r for r in runs if r["hyperparameters"]["decay_shape"] == shape]
    test = [r["test_loss"] for r in rs]
    print(f"| {shape} | {statistics.mean(r['final_val_loss'] for r in rs):.4f} | {statistics.mean(test):.4f} ± "
          f"{statistics.stdev(test):.4f} | {statistics.mean(r['train_seconds'] for r in rs):.1f} |")
PY
