#!/usr/bin/env bash
# Issue 24: the decay's shape alone, on fashion16-wsd's trial 2 (everything else held), 3 seeds, test accuracy.
#   results/issue24_shapes.sh > results/issue24_shapes.log
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
$py -m lrpo_study export --storage sqlite:///results/issue24-fashion.db --study fashion16-wsd --trial 2 -o results/issue24-wsd2.json >/dev/null
for shape in linear cosine 1-sqrt; do
  for seed in 42 43 44; do
    $py -m lrpo_study run --settings results/issue24-wsd2.json --set decay_shape=$shape --seed $seed --test --json \
      --data-dir ../shared/data --device cpu |
      $py -c "import json,sys; r=json.load(sys.stdin); print('$shape', $seed, round(r['test_accuracy'], 4), round(r['final_val_accuracy'], 4))"
  done
done
